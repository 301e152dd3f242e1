"""Tools in a reply: what the model called, what came back, and how it goes in the
history (docs/tools.md).

The conversation only sees a `ToolRunner` (avatar_rtc/tools.py builds the real one from
the settings; the tests hand it fakes).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from avatar_rtc.backends.base import ChatMessage, ToolCall, ToolSpec


class ToolFailed(Exception):
    """A tool could not give a result; str() says why, and the model reads it."""


class ToolRunner(Protocol):
    @property
    def specs(self) -> Sequence[ToolSpec]:
        """The tools the model is offered."""
        ...

    async def run(self, call: ToolCall) -> str:
        """The call's result as text (JSON) for the model; ToolFailed if it has none.
        Cancelling the awaiting task abandons the call."""
        ...


class ToolState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"  # a result
    FAILED = "failed"  # an error, which the model reads as its result
    CANCELLED = "cancelled"  # the user took the floor before it finished


@dataclass
class ToolUse:
    """One call of one tool in a turn."""

    call: ToolCall
    state: ToolState = ToolState.RUNNING
    result: str = ""  # what the model reads back (an error too)

    @property
    def finished(self) -> bool:
        """It has a result (or an error) the model may read: it stays in the history."""
        return self.state in (ToolState.DONE, ToolState.FAILED)

    def record(self) -> dict[str, Any]:
        """The stored form (a turn's `tool_calls`)."""
        return {"id": self.call.id, "name": self.call.name, "arguments": self.call.arguments,
                "state": str(self.state), "result": self.result}


def error_result(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def tool_messages(uses: Sequence[ToolUse], text: str = "") -> list[ChatMessage]:
    """The finished calls as the model's own message (with the `text` it said before
    them) and one message per result; none if no call finished."""
    done = [use for use in uses if use.finished]
    if not done:
        return []
    return [ChatMessage("assistant", text, tool_calls=tuple(u.call for u in done)),
            *(ChatMessage("tool", u.result, tool_call_id=u.call.id) for u in done)]


def results_in_words(messages: list[ChatMessage], user_at: int) -> list[ChatMessage]:
    """The turn's calls and results (after its user message, at `user_at`) folded into
    that message as a note, for the round where the model must answer: a small model
    that kept calling reads a note better than tool messages."""
    calls = {c.id: c for m in messages[user_at + 1:] for c in m.tool_calls}
    notes = [f"{calls[m.tool_call_id].name} returned {m.content}"
             for m in messages[user_at + 1:]
             if m.role == "tool" and m.tool_call_id in calls]
    if not notes:
        return messages
    user = messages[user_at]
    note = f"{user.content}\n\n(Tool results: {'; '.join(notes)}. Answer from them, in words.)"
    return [*messages[:user_at], ChatMessage("user", note)]


@dataclass(frozen=True)
class ToolsConfig:
    runner: ToolRunner
    filler: str = "One moment."  # said while a tool runs, if nothing was said yet
    max_rounds: int = 3  # rounds of calls in one reply; then the model must answer
