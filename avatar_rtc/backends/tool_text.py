"""Tool calls written as text, for models and servers that do not hand them over as
structured `tool_calls`.

Qwen2.5 and other Hermes-style templates ask for `<tool_call>{"name": ..., "arguments":
{...}}</tool_call>`. `<tool_call>` is one special token, which a server's detokenizer
drops, so the reply may also be the bare JSON object (one per call), or that in a
Markdown code block. A reply that starts with any of these is held back whole and parsed
at its end (not a call after all: it is dropped, as no voice reply starts so); text
before a `<tool_call>` is spoken as usual.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from avatar_rtc.backends.base import ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:16]}"


class ToolCallText:
    """Splits a streamed reply into text to speak and the tool calls it writes."""

    def __init__(self) -> None:
        self._held = ""  # not yet said: maybe calls
        self._calls_started = False

    def push(self, delta: str) -> str:
        """The part of the reply so far that is surely text, to say now."""
        self._held += delta
        if self._calls_started:
            return ""
        head = self._held.lstrip()
        if not head:
            return ""
        if head.startswith(("{", "`", OPEN)):
            self._calls_started = True
            return ""
        at = self._held.find(OPEN)
        if at >= 0:
            text, self._held = self._held[:at], self._held[at:]
            self._calls_started = True
            return text
        # Hold a tail that may be the start of "<tool_call>".
        keep = next((n for n in range(min(len(OPEN) - 1, len(self._held)), 0, -1)
                     if OPEN.startswith(self._held[-n:])), 0)
        text = self._held[:len(self._held) - keep]
        self._held = self._held[len(text):]
        return text

    def finish(self) -> tuple[str, tuple[ToolCall, ...]]:
        """At the reply's end: the text still held, and the calls (none: all text)."""
        held, self._held = self._held, ""
        if not self._calls_started:
            return held, ()
        # JSON or a code block that is no call (cut short, a name of its own making):
        # never read out.
        return "", parse_calls(held)


def parse_calls(text: str) -> tuple[ToolCall, ...]:
    """The calls in `text`: JSON objects with a "name", one after another, each maybe
    inside <tool_call> tags; none if anything else is there."""
    rest = text.replace(OPEN, " ").replace(CLOSE, " ").strip()
    if rest.startswith("```"):  # a code block: ```json ... ```
        rest = rest.removeprefix("```").removeprefix("json").removesuffix("```").strip()
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    while rest:
        try:
            value, end = decoder.raw_decode(rest)
        except ValueError:
            return ()
        call = _call(value)
        if call is None:
            return ()
        calls.append(call)
        rest = rest[end:].strip()
    return tuple(calls)


def _call(value: Any) -> ToolCall | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        text = arguments
    elif isinstance(arguments, dict):
        text = json.dumps(arguments, ensure_ascii=False)
    else:
        return None
    return ToolCall(id=new_call_id(), name=value["name"], arguments=text)
