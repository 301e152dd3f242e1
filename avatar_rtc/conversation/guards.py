"""Reply guards: where a small model's reply ends early.

SmolLM2-135M forgets the system prompt's "one or two sentences" a few turns in. Each
guard names one way it goes wrong; the reply pipeline stops the reply there (closing
the token stream stops generation), and the history keeps what was said:

- a loop: one short piece repeated until max_tokens ("ha ha ha ...",
  "L'Alma: 10,000,000,000,..."). The chunker finds no chunk to speak in such a run,
  so the user would wait for all of max_tokens in silence (5-16 s traced with four
  callers) and then hear the run read out;
- a repeated sentence: a reply that says a sentence again goes on looping;
- max_sentences: a reply that said that many sentences is done;
- a speaker tag ("L'Alma: ..."): the chunker keeps it out of the audio, and the
  history must not keep it either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from avatar_rtc.conversation.chunker import ends_sentence
from avatar_rtc.conversation.playout import SpokenChunk

# A piece of up to 16 characters, repeated at least four times through the end.
_REPEATED_TAIL = re.compile(r"(.{1,16}?)\1{3,}\Z", re.DOTALL)
# The repetition must run this long: "1,000,000,000" or "no, no, no" is speech.
MIN_LOOP_CHARS = 40
_WINDOW = 200  # only the end of the reply is searched, once per token


def loop_start(text: str) -> int | None:
    """Where `text` starts repeating one piece over and over (after its first time), if
    the repetition runs through the end of `text`; None otherwise. A piece without a
    letter or digit (a ruler of dashes, dots) does not count."""
    match = _REPEATED_TAIL.search(text, max(0, len(text) - _WINDOW))
    if match is None or match.end() - match.start() < MIN_LOOP_CHARS:
        return None
    piece = match.group(1)
    if not any(c.isalnum() for c in piece):
        return None
    return match.start() + len(piece)


def _spoken_words(text: str) -> list[str]:
    """The words a chunk says, punctuation and case aside."""
    return [w.strip(".,;:!?\"'()").lower() for w in text.split()]


def repeats_a_chunk(text: str, said: Sequence[SpokenChunk]) -> bool:
    """Whether the chunk `text` says again what a chunk of this reply said (three
    words or more: "Yes, yes." is speech)."""
    words = _spoken_words(text)
    return len(words) >= 3 and any(_spoken_words(c.text) == words for c in said)


def said_enough(said: Sequence[SpokenChunk], max_sentences: int) -> bool:
    """Whether the reply's chunks ended `max_sentences` sentences (0: no limit);
    clauses don't count."""
    return bool(max_sentences) and sum(ends_sentence(c.text) for c in said) >= max_sentences


def keeps_what_was_said(*, cut_short: bool, speaker_tag: str) -> bool:
    """Whether the history keeps the reply's spoken chunks rather than the model's own
    words: after a reply cut short (its last, unfinished sentence was not spoken), or
    one that opened with a speaker tag (a small model that reads its own "L'Alma:" in
    the history takes it up as a persona and drifts: a bench call answered six
    questions in a row with "L'Alma: The Moon: A Tale of Two Cities")."""
    return cut_short or bool(speaker_tag)
