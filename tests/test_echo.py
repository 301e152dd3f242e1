"""The echo canceller (WebRTC AEC3 through livekit, for real) and its gate, on Piper
speech sent back through a synthetic speakerphone, and in a call."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import functools
import logging
import time
from collections.abc import AsyncIterator

import av
import numpy as np
import numpy.typing as npt
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from avatar_rtc.backends.base import Pcm, Voice
from avatar_rtc.backends.live_calls import LiveCalls
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.registry import Backends
from avatar_rtc.backends.vad_silero import SileroVad
from avatar_rtc.call import Call
from avatar_rtc.calls import conversation_config, echo_canceller
from avatar_rtc.conversation.endpointing import EndpointConfig, Endpointer, SpeechStarted
from avatar_rtc.conversation.turn import Turn
from avatar_rtc.settings import EchoSettings, Settings
from media.echo import FRAME, RATE, EchoCanceller
from media.resample import resample_pcm
from signaling.offer import OfferError, parse_offer
from signaling.peers import Peer, PeerLimits
from tests.fakes import FakeLlm, FakeStt, FakeTts
from tests.speech import speak

AGENT = ("Sure, I can help you with that. Let me look up the details of your order first. "
         "It looks like the package left our warehouse on Tuesday.")
USER = "Wait, stop."
STEP = 2 * FRAME  # 20 ms, as the inbound track delivers
Floats = npt.NDArray[np.float64]


@functools.cache
def agent_speech() -> Pcm:
    return speak(AGENT, RATE, steady=True)


@functools.cache
def user_speech() -> Pcm:
    return speak(USER, RATE, steady=True)


def rms(x: npt.ArrayLike) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, np.float64))))) + 1e-9


# A speakerphone: the round trip, three reflections and a decaying diffuse tail.
REFLECTIONS = ((0.023, 0.5), (0.041, -0.32), (0.058, 0.2))


def room(delay_s: float, rate: int) -> Floats:
    d = int(delay_s * rate)
    h = np.zeros(d + rate // 4)
    h[d] = 1.0
    for after_s, gain in REFLECTIONS:
        h[d + int(after_s * rate)] += gain
    tail = np.arange(h.size - d - rate // 200)
    rng = np.random.default_rng(7)
    h[d + rate // 200 :] += 0.03 * rng.standard_normal(tail.size) * np.exp(-28 * tail / rate)
    return h


def echo_of(reference: Pcm, delay_s: float, level_db: float = -10.0) -> Floats:
    """``reference`` as the mic hears it back, ``level_db`` under it."""
    ref = reference.astype(np.float64)
    echo = np.convolve(ref, room(delay_s, RATE))[: ref.size]
    return echo * rms(ref) * 10 ** (level_db / 20) / rms(echo[np.abs(echo) > 0])


def as_pcm(x: Floats) -> Pcm:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def run(canceller: EchoCanceller, far: Pcm, mic: Pcm) -> Pcm:
    """Both sides in 20 ms steps, as a call delivers them; the output with the
    canceller's latency taken out."""
    far48 = resample_pcm(far, RATE, 48000)
    usable = mic.size // STEP * STEP
    out = np.concatenate([
        (canceller.far_end(far48[i * 3 : (i + STEP) * 3]), canceller.process(mic[i : i + STEP]))[1]
        for i in range(0, usable, STEP)
    ])
    return out[canceller.latency :]


def erle_db(mic: Pcm, out: Pcm, start_s: float, end_s: float) -> float:
    a, b = int(start_s * RATE), int(end_s * RATE)
    return 20 * float(np.log10(rms(mic[a:b]) / (rms(out[a:b]) + 1.0)))


def speech_starts(pcm: Pcm) -> list[float]:
    """When the call's VAD and endpointing (Silero, default settings) would take the
    audio for the user starting to talk: what interrupts the agent."""
    stream = SileroVad().stream()
    endpointer = Endpointer(EndpointConfig.from_settings(Settings().vad))
    size = stream.frame_samples
    starts = []
    for i in range(0, pcm.size - size + 1, size):
        frame = pcm[i : i + size]
        probability = stream.probability(frame.astype(np.float32) / 32768.0)
        events = endpointer.feed(frame, probability, i / RATE)
        starts += [(i + size) / RATE for e in events if isinstance(e, SpeechStarted)]
    return starts


def loudest(pcm: Pcm, window_s: float = 0.1) -> float:
    """The rms of the loudest window."""
    w = int(window_s * RATE)
    return max(rms(pcm[i : i + w]) for i in range(0, pcm.size - w, w // 2))


def noise(size: int, level: float = 3.0) -> Floats:
    return np.random.default_rng(1).standard_normal(size) * level


# -- the canceller on its own ------------------------------------------------------------

@pytest.mark.parametrize("delay_s", [0.15, 0.45])
def test_a_delayed_reflected_echo_loses_25_db_once_converged(delay_s: float) -> None:
    far = agent_speech()
    mic = as_pcm(echo_of(far, delay_s) + noise(far.size))
    canceller = EchoCanceller(gate=False)
    out = run(canceller, far, mic)
    end = far.size / RATE
    assert erle_db(mic, out, 3.0, end) >= 25.0  # ~40 dB measured (docs/echo.md)
    assert canceller.delay_ms is not None and abs(canceller.delay_ms - delay_s * 1000) < 40
    assert not canceller.failed and canceller.frames_processed > 0


def test_the_user_talking_over_the_agent_is_heard_as_soon_as_with_no_echo() -> None:
    far = agent_speech()
    echo = echo_of(far, 0.3)
    user = np.zeros(far.size)
    spoken = user_speech().astype(np.float64)
    at = int(4.0 * RATE)  # once converged
    user[at : at + spoken.size] = spoken * rms(far) / rms(spoken)  # 0 dB: 10 dB over the echo
    mic = as_pcm(echo + user + noise(far.size))
    span = slice(at, at + spoken.size)
    u = user[span]
    alone = speech_starts(as_pcm(user + noise(far.size)))  # heard with no echo at all
    assert len(alone) == 1
    for gate in (False, True):
        out = run(EchoCanceller(gate=gate), far, mic)
        o = out[span].astype(np.float64)
        correlation = float(np.dot(u, o) / np.sqrt(np.dot(u, u) * np.dot(o, o)))
        assert correlation > (0.8 if gate else 0.4), gate  # AEC3 takes some of it out
        assert 20 * np.log10(rms(o) / rms(u)) > -12, gate
    # With the gate, it interrupts the agent no later than it would with no echo at
    # all, and nothing before it does (AEC3 alone took enough out of it that it did
    # not interrupt at all).
    starts = speech_starts(out)
    assert starts and at / RATE < starts[0] < alone[0] + 0.1, (starts, alone)


def test_the_gate_mutes_the_echo_the_canceller_leaves() -> None:
    far = agent_speech()
    mic = as_pcm(echo_of(far, 0.3) + noise(far.size))
    plain = run(EchoCanceller(gate=False), far, mic)
    canceller = EchoCanceller(gate=True)
    gated = run(canceller, far, mic)
    assert canceller.gate is not None and canceller.gate.muted_frames > 100
    # The gate acts once the echo was found (its round trip known, within the first
    # seconds): from then on what AEC3 lets through goes down to the room's own noise
    # (rms 3 here), and before it nothing it let through sounds like speech.
    found = 3 * RATE
    assert loudest(gated[found:]) < 4.5
    assert loudest(gated[found:]) <= loudest(plain[found:]) + 0.5
    assert speech_starts(gated) == []
    assert speech_starts(mic)  # the raw echo would interrupt the agent


def test_with_the_agent_silent_the_audio_passes_untouched() -> None:
    mic = user_speech()
    canceller = EchoCanceller()
    silence = np.zeros(mic.size, np.int16)
    out = run(canceller, silence, mic)
    assert np.array_equal(out, mic[: out.size])  # bit-exact, ``latency`` later
    assert canceller.latency == 128  # 8 ms
    assert canceller.frames_processed == 0


def test_pieces_of_any_size_come_back_as_long_one_frame_later_at_most() -> None:
    mic = np.tile(user_speech(), 2)[: 20000]
    canceller = EchoCanceller()
    sizes = [100, 333, 17, 480, 1] * 20
    outs, at = [], 0
    for size in sizes:
        outs.append(canceller.process(mic[at : at + size]))
        at += size
    out = np.concatenate(outs)
    assert [o.size for o in outs] == sizes
    lag = canceller.latency + FRAME  # pieces wait for whole frames
    assert np.array_equal(out[lag:], mic[: at - lag]) and not out[:lag].any()


def test_bad_input_is_refused_with_a_clear_error() -> None:
    canceller = EchoCanceller()
    with pytest.raises(TypeError, match="int16"):
        canceller.process(np.zeros(320, np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        canceller.process(np.zeros((2, 160), np.int16))
    with pytest.raises(TypeError, match="int16"):
        canceller.far_end(np.zeros(960, np.int32))  # type: ignore[arg-type]
    assert canceller.process(np.zeros(0, np.int16)).size == 0
    assert not canceller.failed


class BrokenCore:
    latency = 0
    search = 0

    def process(self, near: Pcm, far: Pcm) -> Pcm:
        raise RuntimeError("native failure")


def test_a_failing_canceller_logs_once_and_passes_the_audio_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    far = agent_speech()[: 2 * RATE]
    mic = as_pcm(echo_of(far, 0.2))
    canceller = EchoCanceller(core=BrokenCore)
    with caplog.at_level(logging.ERROR, logger="media.echo"):
        out = run(canceller, far, mic)
    assert canceller.failed
    assert np.array_equal(out, mic[: out.size])
    assert len([r for r in caplog.records if "passing audio through" in r.message]) == 1

    def unavailable() -> BrokenCore:
        raise OSError("no such library")

    with caplog.at_level(logging.ERROR, logger="media.echo"):
        down = EchoCanceller(core=unavailable)
    assert down.failed and np.array_equal(run(down, far, mic), mic[: mic.size // STEP * STEP])


# -- the setting and the offer -------------------------------------------------------------

def test_the_offer_or_else_the_setting_turns_the_canceller_on_or_off() -> None:
    on, off = EchoSettings(), EchoSettings(enabled=False)
    assert isinstance(echo_canceller(on, None), EchoCanceller)
    assert echo_canceller(on, False) is None
    assert echo_canceller(off, None) is None
    assert isinstance(echo_canceller(off, True), EchoCanceller)
    gateless = echo_canceller(EchoSettings(gate=False), None)
    assert gateless is not None and gateless.gate is None


SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
       "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\na=ice-ufrag:x\r\na=ice-pwd:y\r\n"
       "a=fingerprint:sha-256 00\r\n")


def offer_body(**fields: object) -> bytes:
    import json

    return json.dumps({"type": "offer", "sdp": SDP, **fields}).encode()


def test_the_offer_may_ask_for_echo_cancellation_as_a_boolean() -> None:
    assert parse_offer(offer_body()).echo_cancellation is None
    assert parse_offer(offer_body(echo_cancellation=None)).echo_cancellation is None
    assert parse_offer(offer_body(echo_cancellation=True)).echo_cancellation is True
    assert parse_offer(offer_body(echo_cancellation=False)).echo_cancellation is False
    for bad in ("yes", 1, 0, [], {}):
        with pytest.raises(OfferError, match='"echo_cancellation" must be true, false'):
            parse_offer(offer_body(echo_cancellation=bad))


# -- a call ----------------------------------------------------------------------------------

QUESTION = "Where is my order?"
REPLY = ("Your order left our warehouse on Tuesday morning. "
         "It should arrive at your door tomorrow before noon. "
         "I will send you a message with the tracking number.")


class Speakerphone(MediaStreamTrack):
    """The user's mic, as decoded from their Opus packets: what they say, plus what
    the agent sent coming back ``delay_s`` later through a room, 10 dB down."""

    kind = "audio"

    def __init__(self, said: Pcm, delay_s: float) -> None:
        super().__init__()
        self._said = said  # 48 kHz
        self._sent = np.zeros(0, np.int16)
        room_48k = room(delay_s, 48000) * 10 ** (-10 / 20)
        self._taps = room_48k.size
        self._fft = 1 << int(np.ceil(np.log2(2 * self._taps + 960)))
        self._room = np.fft.rfft(room_48k, self._fft)
        self._at = 0
        self._t0: float | None = None

    def agent_sent(self, pcm: Pcm) -> None:  # the outbound track's tap
        self._sent = np.concatenate([self._sent, pcm])

    def _echo(self, start: int, size: int) -> Floats:
        """What was sent, through the room: samples start..start+size of it."""
        lo = start - self._taps + 1
        heard = np.zeros(self._taps - 1 + size)
        a, b = max(lo, 0), min(start + size, self._sent.size)
        if b > a:
            heard[a - lo : b - lo] = self._sent[a:b]
        echo = np.fft.irfft(np.fft.rfft(heard, self._fft) * self._room, self._fft)
        return echo[self._taps - 1 : self._taps - 1 + size]

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        size = 960
        wait = self._t0 + self._at / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        said = np.zeros(size)
        piece = self._said[self._at : self._at + size]
        said[: piece.size] = piece
        mic = as_pcm(said + self._echo(self._at, size))
        frame = av.AudioFrame.from_ndarray(mic.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._at
        frame.time_base = fractions.Fraction(1, 48000)
        self._at += size
        return frame


class PiperSpeech(FakeTts):
    """Piper's voice, each piece of the reply synthesized on a worker thread: one the
    interpreter waits for at exit (PiperTts's model thread is a daemon, and one still
    synthesizing when the process exits aborts it)."""

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        self.texts.append(text)
        yield await asyncio.to_thread(speak, text, self.sample_rate, True)


async def a_call_with_echo(echo: EchoCanceller | None, delay_s: float = 0.25) -> Turn:
    """One question, and the agent's spoken reply coming back at the mic; the first
    turn as it finished."""
    tts = PiperSpeech()
    backends = Backends(vad=SileroVad(), stt=FakeStt(text=QUESTION), llm=FakeLlm(reply=REPLY),
                        tts=tts, live_calls=LiveCalls())
    peer = Peer(RTCPeerConnection(), PeerLimits())
    finished: asyncio.Future[Turn] = asyncio.get_running_loop().create_future()

    def turn_finished(_call: Call, turn: Turn) -> None:
        if not finished.done():
            finished.set_result(turn)

    call = Call(peer, backends, conversation_config(Settings()), echo=echo,
                on_turn_finished=turn_finished)
    said = np.concatenate([np.zeros(24000, np.int16), speak(QUESTION, 48000, steady=True)])
    mic = Speakerphone(said, delay_s)
    call.outbound.add_tap(mic.agent_sent)

    async def send() -> None:  # what aiortc's RTP sender does
        with contextlib.suppress(MediaStreamError):
            while True:
                await call.outbound.recv()

    sender = asyncio.create_task(send())
    peer.pc.emit("track", mic)
    try:
        return await asyncio.wait_for(finished, 60)
    finally:
        mic.stop()
        await peer.close("test over")
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await backends.aclose()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_agent_is_not_interrupted_by_its_own_echo_in_a_call() -> None:
    canceller = EchoCanceller()
    kept = await a_call_with_echo(canceller)
    assert not kept.interrupted and kept.spoken_text.strip() == REPLY, kept.spoken_text
    assert canceller.frames_processed > 300 and not canceller.failed
    assert canceller.delay_ms is not None and 100 < canceller.delay_ms < 400
    # The same call without the canceller: the agent takes its echo for the user.
    cut = await a_call_with_echo(None)
    assert cut.interrupted and cut.spoken_text.strip() != REPLY
