"""When the agent's audio stopped, from the times of its audible frames (both modes).

Two moments after the user starts talking over a reply, because they differ: the agent
first *pauses* (user speech probable), and may resume if the VAD then calls the sound a
false start; it *stops* for good once the interruption is confirmed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

QUIET_S = 0.2  # a pause at least this long counts as the agent going quiet


def first_quiet(audible: Sequence[float], start: float, end: float, frame_s: float,
                quiet_s: float = QUIET_S) -> float:
    """The start of the first run of `quiet_s` with no audible frame, at or after
    `start` (`audible`: sorted start times of audible frames, each `frame_s` long)."""
    candidate = start
    for at in audible:
        if at < start:
            continue
        if at >= end or at - candidate >= quiet_s:
            break
        candidate = max(candidate, at + frame_s)
    return candidate


def audible_at(audible: Sequence[float], now: float, frame_s: float) -> bool:
    """Is the agent speaking at `now`: did its latest frame, audible, arrive within the
    last two frames (one may be late)?"""
    return bool(audible) and 0 <= now - audible[-1] < 2 * frame_s


def last_audible_end(audible: Sequence[float], start: float, end: float,
                     frame_s: float) -> float | None:
    """The end of the last audible frame that starts in [start, end)."""
    inside = [at for at in audible if start <= at < end]
    return inside[-1] + frame_s if inside else None


def longest_silence(audible: Sequence[float], start: float, end: float,
                    frame_s: float) -> float:
    """The longest run without an audible frame between the first and the last audible
    frame in [start, end): a reply that stalls mid-sentence (seconds), not the breath
    between two sentences (a few hundred ms)."""
    inside = [at for at in audible if start <= at < end]
    # Frames a hair closer than frame_s (arrival jitter) leave no silence, not less.
    return max([0.0, *(b - a - frame_s for a, b in itertools.pairwise(inside))])
