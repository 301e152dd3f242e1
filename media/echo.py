"""Acoustic echo cancellation of the user's audio against what the agent sent.

A user on a speakerphone sends the agent's own voice back; without a canceller the
VAD hears it as the user and the agent interrupts itself. ``EchoCanceller`` (one per
call) gets the agent's outbound frames as they are sent (``far_end``) and cleans the
inbound audio (``process``) with WebRTC's AEC3, the canceller browsers use (through
the ``livekit`` package's binding), chosen by measurement: docs/echo.md.

The echo comes back a whole round trip later (150-450 ms and more). AEC3 finds up
to ~450 ms of it itself; a GCC-PHAT estimate of the round trip (media/echo_delay.py)
delays the reference where that is not enough, and aligns the ``EchoGate``
(media/echo_gate.py), which mutes the echo AEC3 leaves and passes the mic's own audio
where the user talks over the agent. While the agent is silent long enough for no
echo to be left, the mic's audio passes untouched and all this costs next to nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from .echo_delay import DelayTracker, gcc_phat
from .echo_gate import EchoGate
from .resample import Pcm, PcmResampler

logger = logging.getLogger(__name__)

RATE = 16000
FRAME = 160  # 10 ms: the frame of WebRTC's audio processing
FAR_RATE = 48000


class EchoCore(Protocol):
    """One canceller: a 10 ms mic frame and the reference frame aligned with it in,
    the mic frame without the echo out, ``latency`` samples late. It finds delays of
    up to ``search`` samples between the reference and the echo itself."""

    latency: int
    search: int

    def process(self, near: Pcm, far: Pcm) -> Pcm: ...


class WebrtcAec3:
    """WebRTC's AEC3 (linear filter, its own fine delay search, residual suppressor)
    with no noise suppression, no gain control and no high-pass filter of its own."""

    # AEC3 works in 4 ms blocks: the 10 ms frame it returns is 128 samples old.
    latency = 128
    # Its own delay search spans ~450 ms (measured: docs/echo.md); keep within 400.
    search = 6400

    def __init__(self) -> None:
        from livekit.rtc.apm import AudioProcessingModule

        self._apm = AudioProcessingModule(echo_cancellation=True)

    def process(self, near: Pcm, far: Pcm) -> Pcm:
        from livekit.rtc.audio_frame import AudioFrame

        self._apm.process_reverse_stream(AudioFrame(bytearray(far.tobytes()), RATE, 1, FRAME))
        buffer = bytearray(near.tobytes())
        self._apm.process_stream(AudioFrame(buffer, RATE, 1, FRAME))  # in place
        out: Pcm = np.frombuffer(buffer, dtype=np.int16)
        return out


class EchoCanceller:
    """Cleans one call's inbound 16 kHz audio of the echo of its outbound audio.

    Both methods run on the event loop (the outbound track's ``recv()`` and the
    inbound reader). Neither raises on a fault of the canceller: it is logged once and
    the audio passes through from then on.
    """

    def __init__(
        self,
        *,
        gate: bool = True,
        max_delay_ms: int = 1000,
        core: Callable[[], EchoCore] = WebrtcAec3,
        gate_margin_db: float = 10.0,
    ) -> None:
        self._failed = False
        self._core: EchoCore | None = None
        try:
            self._core = core()
        except Exception:
            self._fail("start-up")
        self.latency = self._core.latency if self._core is not None else 0
        self._search = self._core.search if self._core is not None else 0
        # Delays here are between read positions, which run _SLACK behind the
        # reference as it arrives: the round trip less _SLACK.
        self.max_delay = max_delay_ms * RATE // 1000
        self.gate = EchoGate(margin_db=gate_margin_db) if gate else None
        self.delay = DelayTracker()
        self._resampler = PcmResampler(FAR_RATE, RATE)
        # The reference, 16 kHz: a ring of the last _RING samples, _far_count in all.
        self._ring = np.zeros(_RING, dtype=np.int16)
        self._far_count = 0
        self._last_loud = -(1 << 62)  # end of the last far frame above _LOUD
        # Mean square of each 10 ms block of the ring (block i: samples i*FRAME...).
        self._energy = np.zeros(_BLOCKS, dtype=np.float64)
        self._quiet_frames = 0  # outbound frames of digital silence in a row
        # The far sample that goes with the next near sample, before any delay.
        self._read = 0
        self._anchor: float | None = None  # far count minus _read, as first seen
        self._offset = 0.0  # ... smoothed since
        self._near_history = np.zeros(_WINDOW, dtype=np.float32)  # a ring
        self._near_filled = 0  # samples in it since the last gap
        self._next_estimate = 0
        self._pending = np.zeros(0, dtype=np.int16)  # under a frame, waiting
        self._out = np.zeros(0, dtype=np.int16)  # processed, not yet returned
        self._bypass_tail = np.zeros(self.latency, dtype=np.int16)
        self.frames_processed = 0
        self.frames_bypassed = 0
        self._processed_at_bypass = 0
        self._predelay_now = 0
        self._active_since = 0  # the read position where the canceller last started

    # -- the agent's side ---------------------------------------------------------

    def far_end(self, pcm48: Pcm) -> None:
        """One outbound frame (int16 mono 48 kHz) as it is sent, silence included."""
        _check(pcm48)
        if self._core is None:
            return
        try:
            if pcm48.any():
                self._quiet_frames = 0
                self._append_far(self._resampler.process(pcm48))
            elif self._quiet_frames >= 2:
                # The resampler holds nothing but zeros by now: zeros in, zeros out,
                # exactly a third as many, without running its filter.
                self._append_far(np.zeros(pcm48.size // 3, np.int16))
            else:
                self._quiet_frames += 1
                self._append_far(self._resampler.process(pcm48))
        except Exception:
            self._fail("the reference")

    def _append_far(self, pcm: Pcm) -> None:
        n = pcm.size
        if n == 0:
            return
        begin = self._far_count
        start = begin % _RING
        first = min(n, _RING - start)
        self._ring[start : start + first] = pcm[:first]
        self._ring[: n - first] = pcm[first:]
        self._far_count += n
        # The energies of the blocks this completed, or touched.
        lo, hi = begin // FRAME, (self._far_count + FRAME - 1) // FRAME
        if pcm.any():
            if int(np.max(np.abs(pcm.astype(np.int32)))) > _LOUD:
                self._last_loud = self._far_count
            blocks = self._far(lo * FRAME, (hi - lo) * FRAME).reshape(-1, FRAME)
            energies = np.mean(np.square(blocks, dtype=np.float64), axis=1)
        else:
            energies = np.zeros(hi - lo)
            if lo * FRAME < begin:  # the first block has earlier, maybe loud samples
                energies[0] = self._energy[lo % _BLOCKS]
        slots = np.arange(lo, hi) % _BLOCKS
        self._energy[slots] = energies

    def _far(self, start: int, length: int) -> Pcm:
        """Reference samples start..start+length; zeros where none were sent (yet)."""
        out = np.zeros(length, dtype=np.int16)
        lo = max(start, self._far_count - _RING, 0)
        hi = min(start + length, self._far_count)
        if hi > lo:
            a, b = lo % _RING, (hi - 1) % _RING + 1
            if a < b:
                out[lo - start : hi - start] = self._ring[a:b]
            else:
                split = _RING - a
                out[lo - start : lo - start + split] = self._ring[a:]
                out[lo - start + split : hi - start] = self._ring[:b]
        return out

    # -- the user's side ----------------------------------------------------------

    def process(self, near16k: Pcm) -> Pcm:
        """The inbound audio (int16 mono 16 kHz, any length) without the agent's echo:
        as many samples as came in, ``latency`` samples (and at most one frame more
        when pieces are not whole 10 ms frames) later."""
        _check(near16k)
        n = near16k.size
        if n == 0:
            return near16k
        self._track_offset()
        if (not self._pending.size and not self._out.size and n % FRAME == 0
                and not self._may_echo(self._read)):
            # Nothing can echo in any of these frames: they pass as they are.
            self._read += n
            self.frames_bypassed += n // FRAME - 1
            self._bypassed()
            joined = np.concatenate([self._bypass_tail, near16k])
            self._bypass_tail = joined[n:]
            passed: Pcm = joined[:n]
            return passed
        data = np.concatenate([self._pending, near16k]) if self._pending.size else near16k
        whole = data.size // FRAME * FRAME
        outputs = [self._out] + [self._frame(data[i : i + FRAME]) for i in range(0, whole, FRAME)]
        self._pending = data[whole:].copy()
        out = np.concatenate(outputs)
        if out.size < n:  # pieces not whole frames: from now on, one frame later
            out = np.concatenate([np.zeros(FRAME, np.int16), out])
        self._out = out[near16k.size :]
        result: Pcm = out[: near16k.size]
        return result

    def _track_offset(self) -> None:
        """Keeps the near stream's read position in step with the reference's.

        Each side counts its own samples; a stall or lost packets on the way in would
        leave the two counts apart. Jitter comes and goes, so only a lasting drift
        (the smoothed offset 50 ms off) moves the read position, and the delay with it.
        """
        if self._anchor is None:
            # Start reading a little in the past: the reference arrives in bursts (the
            # resampler's, the event loop's), and what has not arrived reads as zeros.
            self._read = self._far_count - _SLACK
            self._anchor = self._offset = float(_SLACK)
            return
        offset = float(self._far_count - self._read)
        self._offset += 0.05 * (offset - self._offset)
        drift = round(self._offset - self._anchor)
        if abs(drift) > _DRIFT:
            self._read += drift
            self._offset -= drift
            self.delay.shift(drift)
            self._near_filled = 0

    def _frame(self, near: Pcm) -> Pcm:
        read = self._read
        self._read += FRAME
        bypass = np.concatenate([self._bypass_tail, near])
        self._bypass_tail = bypass[FRAME:]
        core = self._core
        if core is None or not self._may_echo(read):
            self._bypassed()
            return bypass[:FRAME]
        if self.frames_processed == self._processed_at_bypass:
            self._active_since = read  # the agent started speaking again
        self.frames_processed += 1
        self._remember_near(near)
        delay = self.delay.delay
        try:
            out = core.process(near, self._far(read - self._predelay(delay), FRAME))
            # The gate only once an echo was found in the mic: before (the client may
            # cancel its own), its priors took the user's first syllables over the
            # agent (the onset of "Wait, stop." heard ~400 ms later in calls).
            if self.gate is not None and delay is not None:
                # The canceller's output lags by its latency: so must the mic and
                # the reference the gate compares it with.
                settled = read - self._active_since >= (
                    self.max_delay if delay is None else delay) + self.latency
                out = self.gate.apply(out, bypass[:FRAME], self._echo_energy(read - self.latency),
                                      settled=settled,
                                      likeness=lambda: self._likeness(read - self.latency))
            if read + FRAME >= self._next_estimate:
                self._estimate(read + FRAME)
        except Exception:
            self._fail("the inbound audio")
            return bypass[:FRAME]
        return out

    def _predelay(self, delay: int | None) -> int:
        """How much the reference is delayed before the canceller, which finds the
        rest itself (``EchoCore.search``). Moved only when
        the rest leaves that range: each move makes the canceller converge anew, and
        lets echo through meanwhile."""
        search = self._search
        if delay is not None and not 0 <= delay - self._predelay_now <= search:
            self._predelay_now = max(0, delay - search // 2)
        return self._predelay_now

    def _bypassed(self) -> None:
        self.frames_bypassed += 1
        self._processed_at_bypass = self.frames_processed
        self._near_filled = 0
        if self.gate is not None:
            self.gate.reset()

    def _may_echo(self, read: int) -> bool:
        """Whether the near frame at ``read`` may hold an echo (the canceller runs)."""
        delay = self.delay.delay
        horizon = (self.max_delay if delay is None else delay) + _TAIL
        return self._core is not None and self._last_loud > read - horizon

    def _echo_energy(self, read: int) -> float:
        """Mean square of the loudest reference frame whose echo can be in the frame
        at ``read``: from _LEAD after the estimated delay back to _TAIL before it."""
        delay = self.delay.delay
        if delay is None:  # anywhere in the range
            start, end = read - self.max_delay - _TAIL, read + FRAME
        else:
            start, end = read - delay - _TAIL, read - delay + _LEAD + FRAME
        lo = max(start // FRAME, (self._far_count - _RING) // FRAME + 1, 0)
        hi = min((end + FRAME - 1) // FRAME, (self._far_count + FRAME - 1) // FRAME)
        if hi <= lo:
            return 0.0
        a, b = lo % _BLOCKS, (hi - 1) % _BLOCKS + 1
        if a < b:
            return float(np.max(self._energy[a:b]))
        return max(float(np.max(self._energy[a:])), float(np.max(self._energy[:b])))

    def _likeness(self, read: int) -> float:
        """How well the reference explains the mic's frame at ``read`` and the 50 ms
        before it: the largest normalized correlation between them over the delays
        the echo can come back with (from a little before the estimated delay to the
        room's reflections after it). 0 where too little of the mic is kept."""
        end = read + FRAME
        kept = min(self._near_filled, _WINDOW) - (self._read - end)
        if kept < _CONTEXT:
            return 0.0
        at = (self._near_filled - (self._read - end) - _CONTEXT) % _WINDOW
        mic = np.take(self._near_history, np.arange(at, at + _CONTEXT), mode="wrap")
        delay = self.delay.delay
        if delay is None:  # over a second of delays, chance alone correlates this well
            return 0.0
        low, high = max(0, delay - _BEFORE), delay + _AFTER
        far = self._far(end - _CONTEXT - high, _CONTEXT + high - low).astype(np.float64)
        size = 1 << int(np.ceil(np.log2(far.size + _CONTEXT)))
        # corr[k] = sum mic[i] far[i + k]: the echo of far[i + k], delayed high - k.
        corr = np.fft.irfft(np.conj(np.fft.rfft(mic, size)) * np.fft.rfft(far, size), size)
        lags = far.size - _CONTEXT + 1
        power = np.concatenate([[0.0], np.cumsum(far * far)])
        norms = np.sqrt((power[_CONTEXT:] - power[:lags]) * float(np.dot(mic, mic))) + 1e-9
        return float(np.max(corr[:lags] / norms))

    def _remember_near(self, near: Pcm) -> None:
        start = self._near_filled % _WINDOW  # _WINDOW is whole frames
        self._near_history[start : start + FRAME] = near
        self._near_filled += FRAME

    def _estimate(self, end: int) -> None:
        """GCC-PHAT over the last _WINDOW near samples (at least _FIRST_WINDOW), when
        the reference was loud in enough of the span it can echo from."""
        if self._near_filled < _FIRST_WINDOW:
            self._next_estimate = end + _FIRST_WINDOW - self._near_filled
            return
        self._next_estimate = end + (_EVERY if self.delay.delay is None else _EVERY_LOCKED)
        window = min(self._near_filled, _WINDOW)
        far = self._far(end - window - self.max_delay, window + self.max_delay)
        frames = far[: far.size // FRAME * FRAME].reshape(-1, FRAME)
        loud = np.max(np.abs(frames.astype(np.int32)), axis=1) > _LOUD
        if loud.mean() < 0.3:
            return
        at = (self._near_filled - window) % _WINDOW
        near = np.take(self._near_history, np.arange(at, at + window), mode="wrap")
        estimate = gcc_phat(near, far.astype(np.float32), self.max_delay, RATE)
        if self.delay.offer(estimate):
            logger.info("echo round trip %.0f ms (confidence %.0f)", self.delay_ms,
                        estimate.confidence)

    def _fail(self, where: str) -> None:
        if not self._failed:
            logger.exception("echo canceller failed on %s; passing audio through", where)
        self._failed = True
        self._core = None

    @property
    def failed(self) -> bool:
        """True once a fault made it pass the audio through for good."""
        return self._failed

    @property
    def delay_ms(self) -> float | None:
        """The round trip estimated, from the agent's frame sent to its echo heard
        (to within the resampler's and the event loop's bursts, ~30 ms)."""
        delay = self.delay.delay
        return None if delay is None else (delay + _SLACK) * 1000 / RATE

    def summary(self) -> str:
        """One line for the call's log: what it did."""
        delay = self.delay_ms
        said = "unknown" if delay is None else f"{delay:.0f} ms"
        gate = self.gate
        muted = "" if gate is None else f", {gate.muted_frames} frames muted as echo"
        failed = ", failed" if self._failed else ""
        return (f"{self.frames_processed} frames cancelled, {self.frames_bypassed} passed "
                f"through, round trip {said}{muted}{failed}")

    def close(self) -> None:
        """Frees the canceller's native state; later audio passes through."""
        self._core = None


def _check(pcm: Pcm) -> None:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TypeError(f"expected int16 PCM, got {getattr(pcm, 'dtype', type(pcm))}")
    if pcm.ndim != 1:
        raise ValueError(f"expected 1-D mono PCM, got shape {pcm.shape}")


_BLOCKS = 410
_RING = _BLOCKS * FRAME  # 4.1 s of reference: the estimator's span and the longest delay
_WINDOW = 24000  # 1.5 s of mic audio per delay estimate
_FIRST_WINDOW = RATE  # ... or 1 s for the first ones: the gate needs the delay soon
_EVERY = RATE  # estimate each second until the delay is known...
_EVERY_LOCKED = 3 * RATE  # ...then every 3 s, to follow a change
_LOUD = 32  # a far frame with a sample above -60 dBFS is speech, or may echo
_TAIL = 4000  # 250 ms: how long a room keeps an echo ringing after the direct sound
_LEAD = 480  # 30 ms: the delay estimate may be that much late (a reflection's peak)
_DRIFT = 800  # 50 ms
_CONTEXT = 960  # 60 ms of mic audio correlated with the reference (_likeness)
_BEFORE, _AFTER = 960, 1600  # delays -60..+100 ms of the estimate: its error, reflections
_SLACK = 1280  # 80 ms
