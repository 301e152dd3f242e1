"""A small LLM's reply that repeats a short piece of text until max_tokens.

SmolLM2-135M sometimes answers "L'Alma: 10,000,000,000,000,..." or "ha ha ha ha ...".
The chunker finds no chunk to speak in such a run, so the user waits for all of
max_tokens in silence (5-16 s traced with four callers) and then hears the run read out.
The conversation cuts the reply where the repetition starts instead.
"""

from __future__ import annotations

import re

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
