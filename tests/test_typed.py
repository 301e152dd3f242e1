"""Typed messages: the page's `text` message checked, then a user turn like a spoken one
(fake backends; tests/test_call_typed.py has the real call)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from avatar_rtc.conversation.typed import (
    MAX_MESSAGE_BYTES,
    MAX_TEXT_CHARS,
    MessageError,
    TypedText,
    parse_message,
)
from avatar_rtc.persist import turn_record
from tests.conversation_helpers import harness
from tests.fakes import LONG_REPLY, FakeLlm, FakeStt, FakeTts, silence, tone

pytestmark = pytest.mark.timeout(30)


def test_a_text_message_is_parsed_to_one_line() -> None:
    raw = json.dumps({"type": "text", "text": "  What time\n is it?  "})
    assert parse_message(raw) == TypedText("What time is it?")


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"type": "text", "text": "hi"}', "not binary"),
    ("{nope", "not JSON"),
    ('["text", "hi"]', "not a JSON object"),
    ('{"text": "hi"}', 'no string "type"'),
    ('{"type": "audio", "text": "hi"}', "unknown message type 'audio'"),
    ('{"type": "text"}', "text: must be a string"),
    ('{"type": "text", "text": 42}', "text: must be a string"),
    ('{"type": "text", "text": " \\n\\t "}', "text: empty"),
    (json.dumps({"type": "text", "text": "a" * (MAX_TEXT_CHARS + 1)}),
     f"over {MAX_TEXT_CHARS} characters"),
    (json.dumps({"type": "text", "text": "a" * MAX_MESSAGE_BYTES}),
     f"over {MAX_MESSAGE_BYTES} bytes"),
    ('{"type": "text", "text": "\\ud800"}', "not valid Unicode"),
])
def test_a_bad_message_is_refused_with_its_reason(raw: str | bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason.replace("?", r"\?")):
        parse_message(raw)


async def test_a_typed_message_is_a_turn_answered_without_transcribing() -> None:
    stt, llm = FakeStt(), FakeLlm()
    async with harness(stt=stt, llm=llm) as h:
        h.conversation.type_text("What time is it?")
        await h.wait_for("turn_end")
        assert h.of_type("user_transcript") == [
            {"type": "user_transcript", "turn": 0, "text": "What time is it?", "typed": True}]
        end = h.of_type("turn_end")[0]
        assert end["interrupted"] is False and end["spoken_text"] == llm.reply
        assert h.of_type("agent_text")  # the reply's text, as its audio plays
        assert any(np.abs(f).max() > 1000 for f in h.sent_frames)  # and its voice
        assert stt.calls == []
        assert llm.requests[0][-1].content == "What time is it?"
        assert [e["state"] for e in h.of_type("state")] == ["thinking", "speaking", "listening"]
        turn = h.turns[0]
        assert turn.typed and h.conversation.history.exchanges[0].user == "What time is it?"
        stored = turn_record("call-1", turn, offset_ms=lambda at, side: 1000)
        assert stored.typed and stored.user_audio_start_ms is None
        assert stored.agent_audio_start_ms == 1000


async def test_a_typed_message_interrupts_the_reply_like_a_barge_in() -> None:
    llm, tts = FakeLlm(reply=LONG_REPLY), FakeTts()
    async with harness(llm=llm, tts=tts) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("agent_text")
        await asyncio.sleep(0.3)  # the reply is playing
        llm.reply = "It is noon."
        h.conversation.type_text("Stop. What time is it?")
        await h.wait_for("turn_end", 2)
        first, second = h.of_type("turn_end")
        assert first["turn"] == 0 and first["interrupted"] is True
        assert second["turn"] == 1 and second["spoken_text"] == "It is noon."
        # The history keeps what was heard of the cut reply, then the typed turn.
        exchanges = h.conversation.history.exchanges
        assert exchanges[0].interrupted and exchanges[1].user == "Stop. What time is it?"
        assert [t.typed for t in h.turns] == [False, True]


async def test_a_typed_message_while_the_user_talks_drops_the_spoken_draft() -> None:
    stt, llm = FakeStt(delay_s=0.3), FakeLlm()
    async with harness(stt=stt, llm=llm) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.1)]))  # a pause: a tentative turn
        h.conversation.type_text("Typed instead.")
        await h.wait_for("turn_end")
        await asyncio.sleep(0.3)
        transcripts = h.of_type("user_transcript")
        assert transcripts[0]["text"] == "Typed instead." and transcripts[0]["typed"]
        assert h.turns[0].typed
