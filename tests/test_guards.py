"""The reply guards: where a small model's reply ends early."""

from __future__ import annotations

import pytest

from avatar_rtc.conversation.guards import (
    keeps_what_was_said,
    loop_start,
    repeats_a_chunk,
    said_enough,
)
from avatar_rtc.conversation.playout import SpokenChunk


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


def chunks(*texts: str) -> list[SpokenChunk]:
    return [SpokenChunk(text) for text in texts]


def test_a_chunk_that_says_an_earlier_one_again_repeats_it() -> None:
    said = chunks("I am sorry for that.", "I can help with tea.")
    assert repeats_a_chunk("I am sorry for that.", said)
    assert repeats_a_chunk("i am SORRY, for that!", said)  # punctuation and case aside
    assert not repeats_a_chunk("I am glad for that.", said)
    assert not repeats_a_chunk("I am sorry for that.", [])


def test_a_short_chunk_said_twice_is_speech() -> None:
    assert not repeats_a_chunk("Yes, yes.", chunks("Yes, yes."))


@pytest.mark.parametrize(("said", "limit", "enough"), [
    (("Tea is a drink,", "and a good one."), 2, False),  # a clause is not a sentence
    (("Tea is a drink,", "and a good one.", "It comes from leaves."), 2, True),
    (("One.", "Two.", "Three."), 3, True),
    (("One.", "Two.", "Three."), 0, False),  # no limit
    ((), 1, False),
])
def test_a_reply_said_enough_after_max_sentences(said: tuple[str, ...], limit: int,
                                                 enough: bool) -> None:
    assert said_enough(chunks(*said), limit) is enough


def test_the_history_keeps_what_was_said_after_a_cut_or_a_speaker_tag() -> None:
    assert keeps_what_was_said(cut_short=True, speaker_tag="")
    assert keeps_what_was_said(cut_short=False, speaker_tag="L'Alma")
    assert not keeps_what_was_said(cut_short=False, speaker_tag="")
