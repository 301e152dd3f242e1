"""A real call with a typed question: an aiortc client sends `text` on the data channel
and gets the reply as text events and as audio, with the embedded models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avatar_rtc.caller import Caller
from tests.conftest import LiveServer
from tests.test_call import wait_turns

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_a_typed_question_is_answered_by_voice_and_text_and_stored(
    live_server: LiveServer,
) -> None:
    async with Caller(live_server.url) as caller:
        # Bad messages get an error each, and the call goes on.
        await caller.send_raw("{not json")
        await caller.send_raw(json.dumps({"type": "text", "text": "   "}))
        await caller.wait_event("error", message="message: message is not JSON")
        await caller.wait_event("error", message="message: text: empty")

        sent = await caller.type_text("What is the capital of France?")
        transcript = await caller.wait_event("user_transcript")
        first_audio = await caller.wait_agent_audio(after=sent)
        end = await caller.wait_event("turn_end", timeout_s=60)
        await caller.wait_event("timings")
        texts = [e["text"] for _, e in caller.events if e["type"] == "agent_text"]
    assert transcript == {"type": "user_transcript", "turn": 0,
                          "text": "What is the capital of France?", "typed": True}
    assert end["interrupted"] is False and "Paris" in end["spoken_text"], end
    assert " ".join(texts) == end["spoken_text"]
    heard = caller.agent_audio()
    assert np.sqrt(np.mean(heard.astype(np.float64) ** 2)) > 200
    assert 0 < first_audio - sent < 10
    turns = await wait_turns(live_server, 1)
    assert [(t["user_text"], t["typed"]) for t in turns] == [
        ("What is the capital of France?", True)]
    assert turns[0]["spoken_text"] == end["spoken_text"]
    assert turns[0]["user_audio_start_ms"] is None
