"""The cut of Whisper's short-window repeats (pure text; the model tests are elsewhere)."""

from __future__ import annotations

import pytest

from avatar_rtc.backends.stt_whisper import cut_repeat


@pytest.mark.parametrize(
    ("heard", "kept"),
    [
        # Seen with tiny.en and a 3 s window: the utterance, then the start of it again.
        ("What is the capital of France? What is the capital of France? What is",
         "What is the capital of France?"),
        ("Tell me something interesting about the moon. Tell me something",
         "Tell me something interesting about the moon."),
        ("Why is the sky blue? why is the Sky blue", "Why is the sky blue?"),
        ("Yes, yes, yes, go on, go on, please. Yes, yes, yes,",
         "Yes, yes, yes, go on, go on, please."),
        # A loop of two sentences.
        ("Hi there. How are you? Hi there. How", "Hi there. How are you?"),
        # A loop of what came after a pause (seen in a call: "Could you tell me ...").
        ("Could you tell me how far away the moon is? How far away the moon is? How "
         "far away the", "Could you tell me how far away the moon is?"),
    ],
)
def test_a_repeat_after_a_sentence_end_is_cut(heard: str, kept: str) -> None:
    assert cut_repeat(heard) == kept


@pytest.mark.parametrize(
    "heard",
    [
        "What is the capital of France?",
        "",
        "go on, go on, please",  # repeats inside a sentence are the speaker's
        "No. No way.",  # a new sentence that only starts like the first
        "Stop. Stop it now.",
        "One two three. Four five six.",
    ],
)
def test_speech_without_a_loop_is_kept_whole(heard: str) -> None:
    assert cut_repeat(heard) == heard


@pytest.mark.parametrize(
    ("heard", "kept"),
    [
        # Seen with tiny.en on the first 60% of "What is the capital of France?".
        ("what is the capital of what is the capital of what is", "what is the capital of"),
        ("why is this guy, why is this guy, why is", "why is this guy,"),
        ("go on, go on, go", "go on,"),
    ],
)
def test_a_partial_transcript_loses_a_loop_from_any_word(heard: str, kept: str) -> None:
    assert cut_repeat(heard, anywhere=True) == kept
    assert cut_repeat(kept, anywhere=True) == kept


@pytest.mark.parametrize("heard", ["go on, go on, please", "yes yes", "How far away is"])
def test_a_partial_transcript_without_a_loop_is_kept(heard: str) -> None:
    assert cut_repeat(heard, anywhere=True) == heard
