"""An echo-aware gate after the canceller: leftover echo must not sound like the user,
and the user talking over the agent must be heard at once.

The canceller lets bursts of echo through (while it converges, after a change of the
echo path, in a room's reverberant tail at the end of a sentence), and a VAD hears
them as speech. And AEC3's suppressor takes 5-20 dB out of the user's speech over
the agent's: enough that a short "Wait, stop." went unheard (docs/echo.md). So while
the agent speaks, the gate mutes each 10 ms frame that the echo explains, and where
the mic heard more than the echo can be (the user), it passes the mic's own audio,
untouched: the echo under it is quieter than the user by the gate's margins.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .resample import Pcm


class EchoGate:
    """Mutes 10 ms frames whose energy the predicted echo explains; passes the mic's
    audio where the user talks over the agent.

    Two predictions, each relative to the energy of the loudest reference frame that
    can echo in the frame now: of the mic (the echo path's gain) and of the
    canceller's output (what it leaves of the echo). Each is the 90th percentile of
    the last two seconds of frames judged echo: a percentile of a window, not a
    running estimate, so that the user's quieter syllables, judged echo, cannot drag
    it up syllable by syllable. A frame is the user's where the mic is louder than
    the echo can be and the canceller's output more than ``margin_db`` above what it
    leaves of the echo (measured on speech: the two together pass 93-98% of the
    user's frames over the agent, where the output alone lets bursts of echo through
    and the mic alone loses the user's quieter half). There the mic's frame passes
    untouched, and so do the frames just after it.
    """

    def __init__(self, *, margin_db: float = 10.0, hold_frames: int = 15,
                 prior_mic_db: float = -10.0, prior_residual_db: float = -20.0,
                 max_likeness: float = 0.5) -> None:
        self.margin_db = margin_db
        # Where the canceller lets a burst of echo through, the mic's frame is as loud
        # as the user's could be: but it is the reference, delayed and filtered by the
        # room, and correlates with it (~0.8), where the user over the echo does not
        # (~0.3 with the echo 10 dB under them).
        self.max_likeness = max_likeness
        # Speech has quiet stretches between louder ones; keep them once the user is
        # known to be talking (150 ms).
        self.hold_frames = hold_frames
        # Before anything is learnt: a speakerphone's echo, 10 dB under the reference,
        # and a canceller that has taken 10 dB of it out.
        self.mic_db = prior_mic_db
        self.residual_db = prior_residual_db
        self._learnt = np.zeros((_LEARN_FRAMES, 2), dtype=np.float64)  # a ring
        self._learnt_count = 0
        self._energies = np.zeros(_LEARN_FRAMES, dtype=np.float64)  # of the output
        self._energies_count = 0
        self._floor = 1.0  # mean square of the room's noise, as the canceller leaves it
        self._hold = 0
        self._weights = _RESIDUAL  # (mic, residual) in the last frame out
        self.muted_frames = 0
        self.passed_frames = 0  # frames judged while the agent spoke, passed as the user

    def apply(self, residual: Pcm, mic: Pcm, reference_energy: float | None, *,
              settled: bool = True, likeness: Callable[[], float] = lambda: 0.0) -> Pcm:
        """``residual``: the canceller's output for the frame; ``mic``: what went in;
        ``reference_energy``: the mean square of the loudest reference frame that can
        echo in it now, None when no echo can be left. Until ``settled`` (the agent
        has spoken for longer than its echo takes to come back) nothing is learnt:
        the mic without an echo yet is no measure of the echo. ``likeness``: how well
        the reference explains the mic's frame (the largest normalized correlation
        over the delays the echo can have), asked only of frames loud enough to be
        the user."""
        if reference_energy is None or reference_energy <= _SILENT_ENERGY:
            self.reset()
            return residual
        mic_db = _db(_energy(mic) / reference_energy)
        residual_db = _db(_energy(residual) / reference_energy)
        self._track_floor(_energy(residual))
        if (mic_db > self.mic_db and residual_db > self.residual_db + self.margin_db
                and likeness() < self.max_likeness):
            self._hold = self.hold_frames
            self.passed_frames += 1
            return self._mix(mic, residual, _MIC)
        if self._hold > 0:  # the user's quieter sounds
            self._hold -= 1
            self.passed_frames += 1
            return self._mix(mic, residual, _MIC)
        if settled:
            self._learn(mic_db, residual_db)
        self.muted_frames += 1
        # Not digital silence: the VAD takes longer to hear speech start after it
        # (measured: ~0.5 s later). The residual, no louder than the room's floor.
        floor = min(1.0, float(np.sqrt(self._floor / _energy(residual))))
        return self._mix(mic, residual, (0.0, floor))

    def _track_floor(self, energy: float) -> None:
        """The canceller's output where it is quietest: the room's noise (AEC3 fills
        what it suppresses with noise like it), the 10th percentile of 2 s."""
        self._energies[self._energies_count % _LEARN_FRAMES] = energy
        self._energies_count += 1
        if self._energies_count % 20 == 0:
            recent = self._energies[: min(self._energies_count, _LEARN_FRAMES)]
            self._floor = float(np.percentile(recent, 10))

    def _learn(self, mic_db: float, residual_db: float) -> None:
        self._learnt[self._learnt_count % _LEARN_FRAMES] = (max(mic_db, _LOWEST_DB),
                                                            max(residual_db, _LOWEST_DB))
        self._learnt_count += 1
        if self._learnt_count >= _MIN_LEARNT and self._learnt_count % 20 == 0:
            recent = self._learnt[: min(self._learnt_count, _LEARN_FRAMES)]
            self.mic_db, self.residual_db = (float(v) for v in np.percentile(recent, 90, axis=0))

    def reset(self) -> None:
        """The agent went silent: no echo is left, nor a user being held."""
        self._hold = 0
        self._weights = _RESIDUAL

    def _mix(self, mic: Pcm, residual: Pcm, weights: tuple[float, float]) -> Pcm:
        """The frame from the mic and the residual in these proportions; a change
        glides over the frame, as a step would click, and a click is an onset."""
        start, self._weights = self._weights, weights
        if start == weights == _RESIDUAL:
            return residual
        if start == weights == _MIC:
            return mic.copy()
        ramp = np.linspace(0.0, 1.0, residual.size, endpoint=False)
        mic_w = start[0] + (weights[0] - start[0]) * ramp
        residual_w = start[1] + (weights[1] - start[1]) * ramp
        out: Pcm = (mic * mic_w + residual * residual_w).astype(np.int16)
        return out


def _energy(frame: Pcm) -> float:
    samples = frame.astype(np.float64)
    return float(np.dot(samples, samples)) / samples.size + 1.0


def _db(ratio: float) -> float:
    return 10.0 * float(np.log10(ratio))


# A reference frame under -70 dBFS cannot leave an echo that matters.
_SILENT_ENERGY = 10.0**2
_LOWEST_DB = -70.0
_MIC, _RESIDUAL = (1.0, 0.0), (0.0, 1.0)
_LEARN_FRAMES = 200  # 2 s
_MIN_LEARNT = 40
