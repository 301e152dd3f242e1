"""Listening ahead: partial transcripts and LLM prefill while the user speaks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avatar_rtc.conversation.listen_ahead import heard_before_cut
from tests.conversation_helpers import CONFIG, harness
from tests.fakes import FakeLlm, FakeStt, silence, tone

pytestmark = pytest.mark.timeout(30)


async def test_the_llm_prefills_the_conversation_when_the_user_starts_speaking() -> None:
    llm = FakeLlm(reply="Hello there.")
    async with harness(llm=llm) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("turn_end")
        assert [[m.content for m in p] for p in llm.prefills] == [["Be brief."]]
        await h.say(np.concatenate([tone(0.5), silence(0.4)]))
        await h.wait_for("turn_end", 2)
        assert len(llm.prefills) == 2
        assert llm.prefills[1] == llm.requests[1][:-1]  # everything but the new words
        assert llm.prefills[1][-1].content == "Hello there."


async def test_the_llm_reads_the_users_first_words_while_they_still_speak() -> None:
    # Whisper starts some transcripts lower-case, some not: the LLM reads them one way.
    stt, llm = FakeStt(text="what is the capital of France?"), FakeLlm()
    async with harness(stt=stt, llm=llm) as h:
        await h.say(np.concatenate([tone(1.8), silence(0.5)]))
        await h.wait_for("turn_end")
        # Partial transcripts of the speech so far, each longer than the last, all
        # shorter than the final one (a single transcript of the whole utterance).
        assert len(stt.partials) >= 2 and len(stt.calls) == 1
        assert stt.partials == sorted(stt.partials) and stt.partials[-1] < stt.calls[0]
        # The word being said when the audio was cut is left out; the same words are
        # prefilled once.
        assert llm.prefixes == ["", "What is the capital of"]
        assert llm.prefills[-1] == llm.requests[0][:-1]
        assert llm.requests[0][-1].content == "What is the capital of France?"


async def test_listening_ahead_can_be_turned_off() -> None:
    stt, llm = FakeStt(), FakeLlm()
    config = dataclasses.replace(CONFIG, listen_ahead_ms=0)
    async with harness(config, stt=stt, llm=llm) as h:
        await h.say(np.concatenate([tone(1.8), silence(0.5)]))
        await h.wait_for("turn_end")
        assert stt.partials == [] and llm.prefixes == [""]


@pytest.mark.parametrize(("partial", "kept"), [
    ("What is the capital of Fr", "What is the capital of"),
    ("what is the", "What is"),  # the final transcript is said with a capital
    ("Tell me something, end...", "Tell me something"),  # the comma is a guess
    ("How many legs does the sp ... ... ...", "How many legs does the"),
    ("Hello", ""),
    ("", ""),
])
def test_a_partial_transcript_keeps_the_words_before_the_cut(partial: str, kept: str) -> None:
    assert heard_before_cut(partial) == kept
