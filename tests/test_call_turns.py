"""Turn-taking through real calls: an aiortc caller, the embedded models, Smart Turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from avatar_rtc.caller import Caller
from tests.conftest import LiveServer
from tests.speech import speak, with_silence
from tests.test_call import ask_for_a_story, wait_turns

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_a_question_with_a_pause_is_answered_once_after_its_second_half(
    live_server: LiveServer,
) -> None:
    async with Caller(live_server.url) as caller:
        first = caller.say(with_silence(speak("Could you tell me"), 48000, 0.3, 0.9), 48000)
        await first.done.wait()
        second = caller.say(speak("how far away the moon is?"), 48000)
        await second.done.wait()
        assert first.speech_end_at is not None and second.speech_end_at is not None
        answered_at = await caller.wait_agent_audio(after=first.speech_end_at, timeout_s=30)
        transcript = await caller.wait_event("user_transcript")
        await caller.wait_event("turn_end", timeout_s=60)
        await asyncio.sleep(1.0)  # a second turn, if any, would be announced by now
    assert answered_at > second.speech_end_at, "the agent cut in during the pause"
    assert "moon" in transcript["text"].lower(), transcript
    turns = await wait_turns(live_server, 1)
    assert len(turns) == 1 and "moon" in turns[0]["user_text"].lower(), turns


async def test_yeah_over_a_reply_lets_it_play_to_its_end_stored_whole(
    start_server: Callable[..., LiveServer],
) -> None:
    # The caller says "Yeah." in the agent's own (and only) Piper voice: the server's
    # echo canceller would take it for the agent; a caller with its own canceller
    # turns the server's off, as the page may.
    server = start_server(echo__enabled=False, llm__max_sentences=2, llm__max_tokens=200,
                          llm__system_prompt="You are a storyteller. Always answer with a "
                          "long story of at least ten sentences.")
    async with Caller(server.url) as caller:
        ask = await ask_for_a_story(caller)
        assert ask.speech_end_at is not None
        started = await caller.wait_agent_audio(after=ask.speech_end_at, timeout_s=30)
        await asyncio.sleep(max(0.0, started + 1.2 - time.monotonic()))
        nod = caller.say(speak("Yeah."), 48000)
        await nod.done.wait()
        backchannel = await caller.wait_event("backchannel", timeout_s=10)
        end = await caller.wait_event("turn_end", timeout_s=90)
        heard = caller.agent_audio()
    assert end["interrupted"] is False, end
    assert end["spoken_text"] == end["reply_text"].strip()
    assert "yeah" in backchannel["text"].lower() or backchannel["text"] == ""
    assert np.abs(heard).max() > 1000
    turns = await wait_turns(server, 1)
    assert len(turns) == 1 and not turns[0]["interrupted"]
    assert turns[0]["spoken_text"] == end["spoken_text"]
