"""Headless Debian Chromium for browser tests, fully offline.

``chromium(wav)`` starts ``/usr/bin/chromium`` through ``/usr/bin/chromedriver``
with a fake microphone that plays ``wav`` once (then silence), auto-granted
media permissions and autoplay allowed. Selenium Manager is kept offline
(``SE_OFFLINE=true``) and is never asked to download a browser or a driver.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Chromium's fake audio capture reads the file at its own rate; 48 kHz mono
# 16-bit PCM is what it handles best.
FAKE_MIC_RATE = 48_000

BASE_FLAGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    # Timers and media must keep running in a window nobody looks at.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)


def missing_tools() -> list[str]:
    """What a browser test needs that this machine lacks (empty when ready)."""
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]


@contextmanager
def chromium(
    fake_mic_wav: Path | None,
    *,
    extra_args: Sequence[str] = (),
    deny_microphone: bool = False,
    window_size: tuple[int, int] = (1280, 900),
    log_dir: Path | None = None,
) -> Iterator[Any]:
    """Yield a Selenium ``WebDriver`` for a fresh headless Chromium profile.

    ``fake_mic_wav`` is played once by the fake microphone (``%noloop``);
    ``None`` gives Chromium's built-in beep generator. ``deny_microphone``
    makes every getUserMedia() fail with NotAllowedError.
    """
    # Selenium Manager must never try the network, whatever else happens.
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="avatar-rtc-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BASE_FLAGS:
        if deny_microphone and flag == "--use-fake-ui-for-media-stream":
            flag = "--use-fake-ui-for-media-stream=deny"
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    if fake_mic_wav is not None:
        options.add_argument(
            f"--use-file-for-fake-audio-capture={Path(fake_mic_wav).resolve()}%noloop"
        )
    for arg in extra_args:
        options.add_argument(arg)
    # Browser console messages, readable with console_log().
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})

    env = dict(os.environ, SE_OFFLINE="true")
    log_output: Any = subprocess.DEVNULL
    log_file = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(log_dir / "chromedriver.log", "w")  # noqa: SIM115
        log_output = log_file
    service = Service(executable_path=str(CHROMEDRIVER), env=env, log_output=log_output)
    driver = None
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_script_timeout(30)
        yield driver
    finally:
        try:
            if driver is not None:
                driver.quit()
        finally:
            if log_file is not None:
                log_file.close()
            shutil.rmtree(profile, ignore_errors=True)


# --------------------------------------------------------------------- audio


def write_wav(path: Path, samples: np.ndarray, rate: int = FAKE_MIC_RATE) -> Path:
    """Write float samples in [-1, 1] as 16-bit PCM mono."""
    pcm = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    data = (pcm * 32767.0).round().astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as float mono samples and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM")
        rate, channels = w.getframerate(), w.getnchannels()
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    samples = raw.astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    if src_rate == dst_rate:
        return samples
    try:
        import soxr

        out: np.ndarray = np.asarray(soxr.resample(samples, src_rate, dst_rate), dtype=np.float32)
        return out
    except ImportError:  # linear interpolation is good enough for speech
        n_out = round(len(samples) * dst_rate / src_rate)
        t_out = np.arange(n_out) * (src_rate / dst_rate)
        interp: np.ndarray = np.interp(t_out, np.arange(len(samples)), samples)
        return interp.astype(np.float32)


def make_speech_wav(
    text: str,
    path: Path,
    *,
    lead_s: float = 1.0,
    tail_s: float = 4.0,
    peak: float = 0.6,
) -> Path:
    """Speak ``text`` with Piper into a 48 kHz 16-bit mono WAV with silence around it.

    Piper's natural voice, not espeak-ng's formant one: Whisper tiny.en mishears
    robotic speech ("capital of France" -> "capital and friends"), people don't talk so.
    """
    from tests.speech import speak

    speech = speak(text, FAKE_MIC_RATE).astype(np.float32) / 32768.0
    top = float(np.max(np.abs(speech))) or 1.0
    speech = speech * (peak / top)
    lead = np.zeros(round(lead_s * FAKE_MIC_RATE), dtype=np.float32)
    tail = np.zeros(round(tail_s * FAKE_MIC_RATE), dtype=np.float32)
    return write_wav(Path(path), np.concatenate([lead, speech, tail]))


# ------------------------------------------------------------- page helpers

_INBOUND_AUDIO_JS = """
const done = arguments[arguments.length - 1];
const call = window.avatarCall;
const pc = call && call.pc;
if (!pc || pc.connectionState === "closed") { done(null); return; }
pc.getStats().then((report) => {
  let found = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && (s.kind === "audio" || s.mediaType === "audio")) {
      found = {
        packetsReceived: s.packetsReceived || 0,
        packetsLost: s.packetsLost || 0,
        bytesReceived: s.bytesReceived || 0,
        totalAudioEnergy: s.totalAudioEnergy || 0,
        audioLevel: s.audioLevel || 0,
        totalSamplesReceived: s.totalSamplesReceived || 0,
        concealedSamples: s.concealedSamples || 0,
        jitter: s.jitter || 0,
        codec: s.codecId || null,
      };
    }
  });
  done(found);
}, (err) => done({error: String(err)}));
"""


def inbound_audio_stats(driver: Any) -> dict[str, Any] | None:
    """The page's inbound-rtp audio stats from ``avatarCall.pc.getStats()``, or None."""
    result = driver.execute_async_script(_INBOUND_AUDIO_JS)
    if result is None:
        return None
    if not isinstance(result, dict):
        raise RuntimeError(f"getStats returned {result!r}")
    if "error" in result:
        raise RuntimeError(f"getStats failed: {result['error']}")
    return dict(result)


def call_state(driver: Any) -> dict[str, Any]:
    """A JSON-safe copy of ``window.avatarCall`` (without the peer connection)."""
    raw = driver.execute_script(
        """
        const c = window.avatarCall || {};
        return JSON.stringify({
          events: c.events || [], state: c.state, connectionState: c.connectionState,
          iceConnectionState: c.iceConnectionState, sessionId: c.sessionId,
          error: c.error, endReason: c.endReason, inCall: c.inCall,
          pcState: c.pc ? c.pc.connectionState : null,
        });
        """
    )
    state: dict[str, Any] = json.loads(raw)
    return state


def events(driver: Any, type_: str | None = None) -> list[dict[str, Any]]:
    evs = call_state(driver)["events"]
    return [e for e in evs if type_ is None or e.get("type") == type_]


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_for_event(
    driver: Any,
    type_: str,
    timeout: float,
    where: Callable[[dict[str, Any]], bool] = lambda e: True,
) -> dict[str, Any]:
    """Wait for the first data-channel event of ``type_`` matching ``where``."""

    def find() -> dict[str, Any] | None:
        for e in events(driver, type_):
            if where(e):
                return e
        return None

    return wait_until(find, timeout, what=f"a {type_!r} event")  # type: ignore[no-any-return]


def console_log(driver: Any) -> list[str]:
    """Browser console messages collected since the last call."""
    try:
        return [f"{e.get('level')}: {e.get('message')}" for e in driver.get_log("browser")]
    except Exception:  # not every driver supports the log endpoint
        return []


# ------------------------------------------------------------- scripted call

_FAKE_PEER_JS = """
(() => {
  const script = %s;
  class FakeChannel extends EventTarget {
    constructor() { super(); this.onmessage = null; }
    send() {}
    close() {}
    emit(msg) { this.onmessage(new MessageEvent("message", { data: JSON.stringify(msg) })); }
  }
  class FakePeer extends EventTarget {
    constructor() {
      super();
      this.connectionState = "new";
      this.iceConnectionState = "new";
      this.iceGatheringState = "complete";
      this.localDescription = null;
      this.channel = null;
    }
    createDataChannel() { this.channel = new FakeChannel(); return this.channel; }
    addTransceiver() {}
    getSenders() { return []; }
    async createOffer() { return { type: "offer", sdp: "v=0\\r\\n" }; }
    async setLocalDescription(d) { this.localDescription = d; }
    async setRemoteDescription() {
      setTimeout(() => {
        for (const [key, event] of [["iceConnectionState", "iceconnectionstatechange"],
                                    ["connectionState", "connectionstatechange"]]) {
          this[key] = "connected";
          this.dispatchEvent(new Event(event));
        }
        let i = 0;
        const next = () => {
          if (i >= script.length || this.connectionState === "closed") return;
          this.channel.emit(script[i++]);
          setTimeout(next, 10);
        };
        next();
      }, 10);
    }
    close() { this.connectionState = "closed"; this.iceConnectionState = "closed"; }
  }
  window.RTCPeerConnection = FakePeer;
  // A silent oscillator stream in place of a capture device.
  navigator.mediaDevices.getUserMedia = async () => {
    const ctx = new AudioContext();
    const dest = ctx.createMediaStreamDestination();
    ctx.createOscillator().connect(dest);
    return dest.stream;
  };
})();
"""


def script_call(driver: Any, events: Sequence[dict[str, Any]]) -> None:
    """Before the next page load, swap RTCPeerConnection for a fake whose data channel
    plays ``events`` once the answer is applied (POST /offer still goes to the server).
    The page's own modules then run unchanged, without media or models."""
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": _FAKE_PEER_JS % json.dumps(events)}
    )
