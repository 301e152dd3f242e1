"""Whisper tiny.en through the fitted short window, on real speech made with Piper."""

from __future__ import annotations

import pytest

from avatar_rtc.backends.registry import Backends
from avatar_rtc.conversation.listen_ahead import as_said, heard_before_cut
from media.resample import resample_pcm
from tests.conftest import LoopThread
from tests.speech import speak, with_silence, word_error_rate, words

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Tell me something interesting about the moon.",
    "How far away is the sun?",
    "What is your favorite color?",
    "How do I get to the train station from here?",
]


@pytest.mark.parametrize("question", QUESTIONS)
def test_short_questions_are_heard_once_and_right(
    question: str, real_backends: Backends, server_loop: LoopThread
) -> None:
    # The endpointer hands STT the speech plus a little silence on both sides.
    pcm = resample_pcm(with_silence(speak(question), 48000, 0.2, 0.1), 48000, 16000)
    heard = server_loop.run(real_backends.stt.transcribe(pcm, 16000)).text
    # A short window makes Whisper start the utterance over: that must not reach the LLM.
    assert len(words(heard)) <= len(words(question)), heard
    assert word_error_rate(question, heard) <= 0.3, heard  # the bar; Piper varies


def test_a_partial_transcript_of_speech_cut_mid_word_starts_the_final_one(
    real_backends: Backends, server_loop: LoopThread
) -> None:
    """Listening ahead: the words a partial transcript is sure of, as the LLM reads
    them ahead of the end of the turn, begin the final transcript exactly (case and
    punctuation), or the LLM's cache is not reused. Whisper mishears some cut-off
    words ("legs" as "likes"), so most cuts, not all, must agree."""
    agreed, cuts = 0, 0
    stt = real_backends.stt
    for question in QUESTIONS:
        # Steady speech: Piper's random noise would make the count differ run to run.
        spoken = with_silence(speak(question, steady=True), 48000, 0.2, 0.0)
        pcm = resample_pcm(spoken, 48000, 16000)
        final = as_said(server_loop.run(stt.transcribe(pcm, 16000)).text)
        for share in (0.5, 0.6, 0.7):
            partial = server_loop.run(
                stt.transcribe(pcm[: int(len(pcm) * share)], 16000, partial=True)).text
            kept = heard_before_cut(partial)
            assert len(words(kept)) < len(words(final)), (partial, final)
            cuts += 1
            agreed += bool(kept) and final.startswith(kept)
    # Measured: 16 of 18 with steady speech, 49 of 54 with Piper's noise on.
    assert agreed >= cuts * 2 // 3, agreed
