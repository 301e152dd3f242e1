"""Real calls: an aiortc client speaks to a real server running the embedded models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from avatar_rtc.caller import Caller, Utterance
from avatar_rtc.conversation.chunker import SentenceChunker, ends_sentence
from tests.conftest import LiveServer, storyteller
from tests.speech import speak, with_silence, word_error_rate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

QUESTION = "What is the capital of France?"


async def wait_turns(server: LiveServer, count: int, timeout_s: float = 30.0,
                     **match: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        turns = await asyncio.to_thread(server.turns)
        matching = [t for t in turns if all(t.get(k) == v for k, v in match.items())]
        if len(matching) >= count or time.monotonic() > deadline:
            return matching
        await asyncio.sleep(0.2)


async def test_a_spoken_question_is_transcribed_stored_and_answered(
    live_server: LiveServer,
) -> None:
    async with Caller(live_server.url) as caller:
        utterance = caller.say(with_silence(speak(QUESTION), 48000, 0.5, 0.0), 48000)
        await utterance.done.wait()
        assert utterance.speech_end_at is not None
        first_audio = await caller.wait_agent_audio(after=utterance.speech_end_at)
        transcript = await caller.wait_event("user_transcript")
        end = await caller.wait_event("turn_end", timeout_s=60)
        await caller.wait_event("timings")
    assert word_error_rate(QUESTION, transcript["text"]) <= 0.3, transcript
    assert end["interrupted"] is False and end["spoken_text"].strip()
    # Non-silent agent speech came back over WebRTC.
    heard = caller.agent_audio()
    assert np.sqrt(np.mean(heard.astype(np.float64) ** 2)) > 200
    assert 0 < first_audio - utterance.speech_end_at < 10
    turns = await wait_turns(live_server, 1)
    assert len(turns) == 1
    stored = turns[0]
    assert word_error_rate(QUESTION, stored["user_text"]) <= 0.3, stored
    assert stored["spoken_text"] == end["spoken_text"]
    assert not stored["interrupted"]
    for key in ("endpoint_ms", "stt_ms", "llm_first_token_ms", "first_chunk_ms",
                "tts_first_audio_ms", "first_audio_sent_ms"):
        assert key in stored["timings"], key


async def ask_for_a_story(caller: Caller) -> Utterance:
    ask = caller.say(with_silence(speak("Tell me a story about a brave dragon."),
                                  48000, 0.3, 0.0), 48000)
    await ask.done.wait()
    return ask


async def test_talking_over_the_agent_stops_it_and_stores_the_cut_turn(
    start_server: Callable[..., LiveServer],
) -> None:
    server = storyteller(start_server, max_sentences=0)
    async with Caller(server.url) as caller:
        ask = await ask_for_a_story(caller)
        assert ask.speech_end_at is not None
        started = await caller.wait_agent_audio(after=ask.speech_end_at, timeout_s=30)
        await asyncio.sleep(1.5)  # the agent is mid-story
        barge = caller.say(speak("Stop, stop. Wait a moment please."), 48000)
        await barge.voiced.wait()
        assert barge.speech_start_at is not None
        quiet_at = await caller.wait_agent_quiet(after=barge.speech_start_at, quiet_s=0.3)
        end = await caller.wait_event("turn_end", interrupted=True, timeout_s=20)
        await barge.done.wait()
    assert started < barge.speech_start_at
    # The agent's audio stopped soon after the user started talking over it.
    assert quiet_at - barge.speech_start_at < 1.0
    assert end["spoken_text"] and len(end["spoken_text"]) < len(end["reply_text"].strip())
    turns = await wait_turns(server, 1, interrupted=True)
    assert turns and turns[0]["interrupted"]
    assert turns[0]["spoken_text"] == end["spoken_text"]
    assert end["reply_text"].strip().startswith(turns[0]["spoken_text"].split()[0])


async def test_a_long_answer_ends_after_max_sentences_with_the_real_models(
    start_server: Callable[..., LiveServer],
) -> None:
    """SmolLM2 told to tell a long story stops after two spoken sentences; the stored
    turn holds exactly what was said."""
    server = storyteller(start_server, max_sentences=2)
    async with Caller(server.url) as caller:
        await ask_for_a_story(caller)
        end = await caller.wait_event("turn_end", timeout_s=90)
    assert not end["interrupted"]
    spoken = end["spoken_text"]
    assert spoken.endswith((".", "!", "?")), spoken
    chunker = SentenceChunker()
    sentences = sum(ends_sentence(c) for c in chunker.push(spoken) + chunker.flush())
    assert sentences == 2, spoken  # the model went on to 4+ without the limit
    assert end["reply_text"] == spoken  # the rest was neither generated on nor kept
    turns = await wait_turns(server, 1)
    assert turns[0]["spoken_text"] == spoken
