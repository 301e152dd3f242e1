"""The verdict on a pause: the end-of-turn model's probability and the pause's words."""

from __future__ import annotations

import pytest

from avatar_rtc.conversation.turn_end import TurnEndConfig, Verdict, decide, text_verdict

UNFINISHED = [
    "Could you tell me?", "I was wondering.", "What do you think about?", "So I need...",
    "I was thinking about, um", "and then we went to the...", "My favorite color is",
    "Can you explain why the", "I want to know.", "The thing is...", "Wait, stop.",
    "No no, hold on.", "Let me", "I went there because", "Do you happen to know?",
    "I forgot", "Can you explain?",
]
FINISHED = [
    "What is the capital of France?", "Tell me a joke.", "Yes.", "No.", "I think so.",
    "Can you help me?", "Could you tell me how far away the moon is?",
    "I was wondering what the capital of Spain is.", "Yes it is.", "I do not.",
    "What time is it in Tokyo?", "Stop talking.", "Where is it?", "Thank you.",
    "How are you?", "Hello there.", "I told her.", "I like this.", "I want some more.",
]


@pytest.mark.parametrize("text", UNFINISHED)
def test_words_that_cannot_end_a_turn_hold_it(text: str) -> None:
    assert text_verdict(text) is Verdict.INCOMPLETE


@pytest.mark.parametrize("text", FINISHED)
def test_finished_sentences_may_end_it(text: str) -> None:
    assert text_verdict(text) is Verdict.COMPLETE


def test_unpunctuated_or_empty_words_say_nothing() -> None:
    assert text_verdict("") is Verdict.UNSURE
    assert text_verdict("sounds good") is Verdict.UNSURE


CONFIG = TurnEndConfig(complete_threshold=0.5, incomplete_threshold=0.1)


@pytest.mark.parametrize(("probability", "text", "verdict"), [
    (0.98, "What is the capital of France?", Verdict.COMPLETE),
    (0.98, "Could you tell me?", Verdict.INCOMPLETE),  # synthetic prosody, the words know
    (0.05, "What is the capital of France?", Verdict.UNSURE),  # synthetic voices sound so
    (0.05, "sounds good", Verdict.INCOMPLETE),  # sure it goes on
    (0.3, "What is the capital of France?", Verdict.UNSURE),
    (0.98, None, Verdict.COMPLETE),  # no transcript: the model alone
    (0.3, None, Verdict.UNSURE),
    (None, "Tell me a joke.", Verdict.COMPLETE),  # no model: the words alone
    (None, "and then we went to the", Verdict.INCOMPLETE),
    (None, None, Verdict.UNSURE),
])
def test_the_model_and_the_words_together(probability: float | None, text: str | None,
                                          verdict: Verdict) -> None:
    assert decide(probability, text, CONFIG) is verdict


def test_text_cues_can_be_turned_off() -> None:
    config = TurnEndConfig(text_cues=False)
    assert decide(0.98, "Could you tell me?", config) is Verdict.COMPLETE
