"""The bulk delay between what the agent sent and its echo in what the user's mic sent.

Over WebRTC the echo comes back after the whole round trip: the peer's jitter buffer
and playout, the air between speaker and mic (~150 ms on a speakerphone), capture and
our own jitter buffer; 150-450 ms in practice, more on a bad network. GCC-PHAT (the
cross-correlation of the two signals with every frequency weighted alike) finds it
from a couple of seconds of the agent speaking, even with the user talking too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# Both signals are halved to 8 kHz first: the delay only needs to be known to a few
# samples (the canceller models the rest), and the FFTs cost a quarter as much.
_DECIMATE = 2
# Telephone band: below it rumble, above it little speech and the resamplers' edges.
_LOW_HZ, _HIGH_HZ = 150.0, 3600.0


@dataclass(frozen=True)
class DelayEstimate:
    delay: int  # samples at the input rate: the echo lags the reference by this much
    confidence: float  # the peak over the correlation's spread; noise gives ~4-5


def gcc_phat(near: FloatArray, far: FloatArray, max_delay: int, rate: int = 16000
             ) -> DelayEstimate:
    """Where in ``far`` the echo in ``near`` comes from.

    ``near`` holds the last ``n`` samples of the mic; ``far`` the reference over the
    same span and the ``max_delay`` samples before it (``n + max_delay`` samples,
    ending at the same instant). Returns the delay in 0..max_delay.
    """
    n = near.size
    if far.size != n + max_delay:
        raise ValueError(f"far must hold {n + max_delay} samples, got {far.size}")
    x = _halve(near)
    y = _halve(far)
    lags = max_delay // _DECIMATE
    size = 1 << int(np.ceil(np.log2(x.size + y.size)))
    spectrum = np.conj(np.fft.rfft(x, size)) * np.fft.rfft(y, size)
    freqs = np.fft.rfftfreq(size, _DECIMATE / rate)
    spectrum[(freqs < _LOW_HZ) | (freqs > _HIGH_HZ)] = 0
    spectrum /= np.abs(spectrum) + 1e-12
    # corr[k] = sum x[i] y[i + k]; y[i + k] is the reference lags - k samples before
    # x[i], so the delay is lags - k.
    corr = np.fft.irfft(spectrum, size)[: y.size - x.size + 1]
    peak = int(np.argmax(corr))
    spread = float(np.std(corr)) + 1e-12
    return DelayEstimate((lags - peak) * _DECIMATE, float(corr[peak]) / spread)


def _halve(signal: FloatArray) -> FloatArray:
    even = signal[: signal.size // _DECIMATE * _DECIMATE]
    halved: FloatArray = even.reshape(-1, _DECIMATE).mean(axis=1, dtype=np.float32)
    return halved


class DelayTracker:
    """Keeps one delay, and moves it only when two estimates in a row agree, or takes
    a first one that stands out beyond doubt.

    One estimate can be wrong (the user talking, a pause in the agent's speech);
    two independent windows that agree rarely are. Speech echoed back scores 40-60,
    noise 4-5 (docs/echo.md): a first estimate over ``sure_confidence`` is taken at
    once, since until there is one the gate cannot tell echo from the user as well.
    """

    def __init__(self, *, min_confidence: float = 8.0, sure_confidence: float = 20.0,
                 tolerance: int = 48) -> None:
        self.min_confidence = min_confidence
        self.sure_confidence = sure_confidence
        self.tolerance = tolerance  # samples; 3 ms at 16 kHz
        self.delay: int | None = None
        self._candidate: int | None = None
        self.estimates = 0
        self.changes = 0

    def offer(self, estimate: DelayEstimate) -> bool:
        """Takes one estimate; True when the delay changed."""
        self.estimates += 1
        if estimate.confidence < self.min_confidence:
            return False
        if self.delay is not None and abs(estimate.delay - self.delay) <= self.tolerance:
            self._candidate = None
            return False
        candidate, self._candidate = self._candidate, estimate.delay
        if self.delay is None and estimate.confidence >= self.sure_confidence:
            candidate = estimate.delay
        if candidate is None or abs(candidate - estimate.delay) > self.tolerance:
            return False
        self.delay = (candidate + estimate.delay) // 2
        self._candidate = None
        self.changes += 1
        return True

    def shift(self, samples: int) -> None:
        """The streams were re-anchored by ``samples``: the echo moved with them."""
        if self.delay is not None:
            self.delay = max(0, self.delay + samples)
        self._candidate = None
