"""Detecting a reply that repeats one short piece through its end."""

from __future__ import annotations

import pytest

from avatar_rtc.conversation.loops import loop_start


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("L'Alma: 10" + ",000" * 12, "L'Alma: 10,000"),
        ("Sure! " + "ha" * 25, "Sure! ha"),
        ("Well, " + "ha " * 14, "Well, ha "),
    ],
)
def test_a_repetition_is_cut_after_its_first_time(text: str, kept: str) -> None:
    start = loop_start(text)
    assert start is not None and text[:start] == kept


@pytest.mark.parametrize(
    "text",
    [
        "It costs 1,000,000,000 dollars.",  # a long number is speech
        "no, " * 9,  # under 40 characters of repetition
        "Here is a sentence. " * 4,  # a piece longer than 16 characters
        "-" * 60,  # no letter or digit in the piece
        "ha " * 20 + "and then it stopped.",  # the repetition ended
        "",
    ],
)
def test_speech_is_not_a_loop(text: str) -> None:
    assert loop_start(text) is None
