"""Playout bookkeeping: the reply's queued audio, when it starts, what was heard of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from avatar_rtc.conversation.playout import (
    DEFAULT_SAMPLES_PER_CHAR,
    PlayoutTracker,
    SpokenChunk,
    cut_at_fraction,
    heard_text,
)
from media import PlayoutChunk


class FakePlayout:
    """An outbound queue that only records what it is asked."""

    def __init__(self) -> None:
        self.on_chunk_started: Callable[[Any], None] | None = None
        self.queued: list[PlayoutChunk] = []
        self.calls: list[str] = []

    def enqueue(self, pcm: np.ndarray, *, label: object = None) -> PlayoutChunk:
        chunk = PlayoutChunk(total_samples=len(pcm), label=label)
        self.queued.append(chunk)
        return chunk

    def clear(self) -> list[PlayoutChunk]:
        self.calls.append("clear")
        return []

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")

    def set_gain(self, gain: float) -> None:
        self.calls.append(f"gain {gain:g}")

    @property
    def is_playing(self) -> bool:
        return bool(self.queued)

    def start(self, chunk: PlayoutChunk, at: float) -> None:
        """What the track does as the chunk's first frame goes out."""
        chunk.started_at = at
        assert self.on_chunk_started is not None
        self.on_chunk_started(chunk)


def played(text: str, sent: int, total: int, *, synthesized: bool = True) -> SpokenChunk:
    chunk = SpokenChunk(text, synthesized=synthesized)
    chunk.playouts.append(PlayoutChunk(total_samples=total, sent_samples=sent))
    return chunk


def test_a_fraction_of_the_audio_keeps_the_words_fully_spoken() -> None:
    text = "Tea is made from leaves."
    assert cut_at_fraction(text, 1.0) == text
    assert cut_at_fraction(text, 0.5) == "Tea is made"
    assert cut_at_fraction(text, 0.0) == ""


def test_what_was_heard_ends_in_the_first_chunk_not_played_out() -> None:
    chunks = [played("First one.", 100, 100), played("Second one here.", 70, 100),
              played("Third.", 0, 100)]
    assert heard_text(chunks, DEFAULT_SAMPLES_PER_CHAR) == "First one. Second one"


def test_a_chunk_still_being_synthesized_is_measured_by_the_voice_s_pace() -> None:
    # 40 samples synthesized so far; "Tea is hot." at 10 samples a character is 110,
    # and 70 of them went out: "Tea is".
    chunk = played("Tea is hot.", 70, 40, synthesized=False)
    assert heard_text([chunk], samples_per_char=10) == "Tea is"


def test_the_track_s_start_report_finds_the_turn_and_its_chunk() -> None:
    playout = FakePlayout()
    started: list[tuple[object, str, bool, float | None]] = []
    tracker = PlayoutTracker(
        playout, lambda owner, chunk, first, at: started.append((owner, chunk.text, first, at)))
    turn, chunk = object(), SpokenChunk("Hello there.")
    tracker.enqueue(turn, chunk, np.zeros(480, np.int16))
    tracker.enqueue(turn, chunk, np.zeros(480, np.int16))
    playout.start(playout.queued[0], 1.0)
    playout.start(playout.queued[1], 1.01)
    assert started == [(turn, "Hello there.", True, 1.0), (turn, "Hello there.", False, 1.01)]
    playout.start(PlayoutChunk(total_samples=1, label="not ours"), 2.0)
    assert len(started) == 2


def test_a_synthesized_chunk_teaches_the_voice_s_pace() -> None:
    tracker = PlayoutTracker(FakePlayout(), lambda *_: None)
    chunk = SpokenChunk("Hello.")  # 6 characters
    tracker.enqueue(object(), chunk, np.zeros(6000, np.int16))
    tracker.synthesized(chunk)
    assert chunk.synthesized
    assert tracker.samples_per_char == 0.8 * DEFAULT_SAMPLES_PER_CHAR + 0.2 * 1000
    assert tracker.heard([chunk], cut=False) == "Hello."
    assert tracker.heard([chunk], cut=True) == ""  # nothing was sent


def test_a_pause_for_the_user_resumes_only_after_a_false_start() -> None:
    playout = FakePlayout()
    tracker = PlayoutTracker(playout, lambda *_: None)
    tracker.resume_after_false_start()  # nothing paused: nothing to resume
    tracker.pause_for_user()
    tracker.resume_after_false_start()
    tracker.pause_for_user()
    tracker.user_spoke()  # real speech: the pause ends with the reply it held
    tracker.resume_after_false_start()
    tracker.clear()
    assert playout.calls == ["pause", "resume", "pause", "clear", "gain 1"]
