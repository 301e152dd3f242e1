"""The data-channel events: each one's JSON, exactly as the page reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from avatar_rtc.conversation import events
from avatar_rtc.conversation.events import ConversationState


@pytest.mark.parametrize(("event", "wire"), [
    (events.Hello(session_id="abc"), {"type": "hello", "session_id": "abc"}),
    (events.State(state=ConversationState.THINKING), {"type": "state", "state": "thinking"}),
    (events.Vad(speaking=True), {"type": "vad", "speaking": True}),
    (events.UserTranscript(turn=0, text="Hello there"),
     {"type": "user_transcript", "turn": 0, "text": "Hello there", "typed": False}),
    (events.AgentText(turn=1, text="Paris."), {"type": "agent_text", "turn": 1, "text": "Paris."}),
    (events.TurnEnd(turn=2, interrupted=True, spoken_text="Tea is", reply_text="Tea is hot."),
     {"type": "turn_end", "turn": 2, "interrupted": True, "spoken_text": "Tea is",
      "reply_text": "Tea is hot."}),
    (events.Timings(turn=3, timings={"stt_ms": 81.5}),
     {"type": "timings", "turn": 3, "timings": {"stt_ms": 81.5}}),
    (events.Error(message="llm: failed"), {"type": "error", "message": "llm: failed"}),
    (events.Bye(reason="idle_timeout"), {"type": "bye", "reason": "idle_timeout"}),
    (events.Backchannel(text="Mm-hmm."), {"type": "backchannel", "text": "Mm-hmm."}),
])
def test_each_event_is_sent_as_its_type_and_fields(event: events.Event,
                                                   wire: dict[str, Any]) -> None:
    assert event.to_dict() == wire
    text = event.to_json()
    assert json.loads(text) == wire
    assert list(json.loads(text)) == list(wire)  # "type" first, then the fields in order


def test_text_goes_out_as_written_not_escaped() -> None:
    text = events.AgentText(turn=0, text="Café… 東京").to_json()
    assert "Café… 東京" in text


def test_the_state_is_its_wire_value() -> None:
    assert [s.value for s in ConversationState] == ["listening", "thinking", "speaking",
                                                    "closed"]
    assert ConversationState.SPEAKING == "speaking"
    assert json.dumps(ConversationState.LISTENING) == '"listening"'
