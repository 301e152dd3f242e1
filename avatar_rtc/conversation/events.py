"""The events a call sends the page over its "events" data channel (docs/protocol.md).

Each is a frozen dataclass; `to_json()` writes `{"type": <wire name>, <fields>...}`,
the fields in the order declared here.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, ClassVar


class ConversationState(enum.StrEnum):
    """What the agent is doing; a str, so the wire value is the member itself."""

    LISTENING = "listening"  # no reply owns the outbound audio
    THINKING = "thinking"  # the user's turn ended; the reply's audio has not started
    SPEAKING = "speaking"  # the reply's audio is playing
    CLOSED = "closed"  # hung up; never sent (the call says "bye")


class _Event:
    type: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **vars(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class Hello(_Event):
    """First on the channel once it opens: the call's id."""

    type: ClassVar[str] = "hello"
    session_id: str


@dataclass(frozen=True)
class State(_Event):
    """The agent's state changed (and once after `hello`: the state then)."""

    type: ClassVar[str] = "state"
    state: ConversationState


@dataclass(frozen=True)
class Vad(_Event):
    """The user started (True), paused (False) or went on (True) speaking."""

    type: ClassVar[str] = "vad"
    speaking: bool


@dataclass(frozen=True)
class UserTranscript(_Event):
    """What the user said in a turn, once it is both final and transcribed."""

    type: ClassVar[str] = "user_transcript"
    turn: int
    text: str
    typed: bool = False  # the user typed it (a "text" message), not said it


@dataclass(frozen=True)
class AgentText(_Event):
    """A chunk of the reply, as its audio starts playing."""

    type: ClassVar[str] = "agent_text"
    turn: int
    text: str


@dataclass(frozen=True)
class TurnEnd(_Event):
    """A turn is over: the reply played out, was interrupted or was cut off."""

    type: ClassVar[str] = "turn_end"
    turn: int
    interrupted: bool
    spoken_text: str  # what the user heard
    reply_text: str  # what the model wrote (less what the reply guards cut)


@dataclass(frozen=True)
class Timings(_Event):
    """The turn's stage times, in ms after the end of the user's speech."""

    type: ClassVar[str] = "timings"
    turn: int
    timings: dict[str, float]


@dataclass(frozen=True)
class Backchannel(_Event):
    """The user said "mm-hmm", "yeah" (or laughed) over the reply, and it went on."""

    type: ClassVar[str] = "backchannel"
    text: str  # as heard; may be empty (a laugh, a cough)


@dataclass(frozen=True)
class Language(_Event):
    """The caller's language changed, or no voice speaks it: `answer` is the reply's
    language, `spoken` whether a voice reads it (else text only, with `reason`)."""

    type: ClassVar[str] = "language"
    heard: str
    answer: str
    spoken: bool
    reason: str


@dataclass(frozen=True)
class Error(_Event):
    """A turn failed (a backend error, or a bug); the agent goes on listening."""

    type: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True)
class Bye(_Event):
    """The server ends the call, and why (the peer's close reason)."""

    type: ClassVar[str] = "bye"
    reason: str


Event = (Hello | State | Vad | UserTranscript | AgentText | TurnEnd | Timings | Backchannel
         | Language | Error | Bye)
