"""Playout bookkeeping: the reply's audio on the outbound queue, and what was heard of it.

A reply's text chunks are synthesized into audio pieces queued on the outbound track.
The track reports when a piece starts; when the reply ends early (barge-in, hang-up,
a failure) the samples really sent say how much of its text the user heard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from avatar_rtc.backends.base import Pcm

OUTBOUND_RATE = 48000

# Speaking rate used to guess a chunk's length before its synthesis is complete.
DEFAULT_SAMPLES_PER_CHAR = OUTBOUND_RATE / 14.0


class Playout(Protocol):
    """The outbound audio queue (media.PlayoutQueue implements it; PacedAudioTrack is one)."""

    on_chunk_started: Callable[[Any], None] | None

    def enqueue(self, pcm: Pcm, *, label: object = None) -> Any: ...

    def clear(self) -> list[Any]: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_gain(self, gain: float) -> None: ...

    @property
    def is_playing(self) -> bool: ...


class PlayoutChunk(Protocol):
    """What the conversation needs to know of a queued piece of outbound audio."""

    total_samples: int
    sent_samples: int
    started_at: float | None

    async def wait(self) -> None: ...


@dataclass
class SpokenChunk:
    """One text chunk and the audio pieces it was synthesized into."""

    text: str
    playouts: list[PlayoutChunk] = field(default_factory=list)
    synthesized: bool = False

    @property
    def sent_samples(self) -> int:
        return sum(p.sent_samples for p in self.playouts)

    @property
    def total_samples(self) -> int:
        return sum(p.total_samples for p in self.playouts)


def cut_at_fraction(text: str, fraction: float) -> str:
    """The words of `text` fully spoken after `fraction` of its audio played."""
    if fraction >= 0.999:
        return text
    limit = len(text) * max(0.0, fraction)
    kept: list[str] = []
    position = 0
    for word in text.split():
        start = text.index(word, position)
        position = start + len(word)
        if position > limit:
            break
        kept.append(word)
    return " ".join(kept)


def heard_text(chunks: list[SpokenChunk], samples_per_char: float) -> str:
    """The text covered by the samples really sent, cut at a word boundary."""
    parts: list[str] = []
    for chunk in chunks:
        sent, total = chunk.sent_samples, chunk.total_samples
        if sent <= 0:
            break
        if chunk.synthesized and sent >= total:
            parts.append(chunk.text)
            continue
        expected = total if chunk.synthesized else max(total, len(chunk.text) * samples_per_char)
        part = cut_at_fraction(chunk.text, sent / expected)
        if part:
            parts.append(part)
        break
    return " ".join(parts)


# (the chunk's owner, the chunk, its first audio piece?, when the track started it)
ChunkStarted = Callable[[object, SpokenChunk, bool, "float | None"], None]


class PlayoutTracker:
    """One call's outbound queue, as the conversation sees it: every piece it queues
    is labelled with its owner (the turn) and chunk, so the track's "started" report
    finds them."""

    def __init__(self, playout: Playout, on_started: ChunkStarted) -> None:
        self._playout = playout
        self._on_started = on_started
        self._paused_for_user = False
        self.samples_per_char = DEFAULT_SAMPLES_PER_CHAR
        playout.on_chunk_started = self._chunk_started

    def enqueue(self, owner: object, chunk: SpokenChunk, pcm48: Pcm) -> None:
        chunk.playouts.append(self._playout.enqueue(pcm48, label=(owner, chunk)))

    def synthesized(self, chunk: SpokenChunk) -> None:
        """The chunk's audio is all queued: learn this voice's pace from it, to estimate
        chunks cut before their synthesis ends."""
        chunk.synthesized = True
        if chunk.total_samples and chunk.text:
            self.samples_per_char = 0.8 * self.samples_per_char + 0.2 * (
                chunk.total_samples / len(chunk.text)
            )

    def heard(self, chunks: list[SpokenChunk], *, cut: bool) -> str:
        """What the user heard of a reply: all its chunks, unless it was cut."""
        if cut:
            return heard_text(chunks, self.samples_per_char)
        return " ".join(chunk.text for chunk in chunks)

    def pause_for_user(self) -> None:
        """The user may be starting to speak: hold the reply's audio."""
        self._playout.pause()
        self._paused_for_user = True

    def resume_after_false_start(self) -> None:
        if self._paused_for_user:
            self._paused_for_user = False
            self._playout.resume()

    def resume_ducked(self, db: float) -> None:
        """The user talks on over the reply, and it goes on under them."""
        self._paused_for_user = False
        self._playout.set_gain(10 ** (db / 20))
        self._playout.resume()

    def unduck(self) -> None:
        self._playout.set_gain(1.0)

    def user_spoke(self) -> None:
        """The user's speech was confirmed: a pause held for it is over (the reply it
        held, if any, was interrupted)."""
        self._paused_for_user = False

    def clear(self) -> None:
        """Silence now (within one frame); this also ends a pause, so the next reply plays."""
        self._playout.clear()
        self._playout.set_gain(1.0)
        self._paused_for_user = False

    def _chunk_started(self, playout: Any) -> None:
        label = getattr(playout, "label", None)
        if not isinstance(label, tuple) or len(label) != 2:
            return
        owner, chunk = label
        if not isinstance(chunk, SpokenChunk):
            return
        first_piece = bool(chunk.playouts) and chunk.playouts[0] is playout
        self._on_started(owner, chunk, first_piece, playout.started_at)
