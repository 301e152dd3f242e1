"""Tool calls written as text (tool_text.py), as Qwen2.5 writes them."""

from __future__ import annotations

import json

import pytest

from avatar_rtc.backends.tool_text import ToolCallText, parse_calls


def split(reply: str, step: int = 3) -> tuple[str, list[tuple[str, str]]]:
    """The reply streamed in pieces of `step` characters: what is said, and the calls."""
    text = ToolCallText()
    said = "".join(text.push(reply[i:i + step]) for i in range(0, len(reply), step))
    rest, calls = text.finish()
    return said + rest, [(c.name, c.arguments) for c in calls]


@pytest.mark.parametrize("reply", [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',  # the tags' tokens dropped
    '```json\n{\n  "name": "get_weather",\n  "arguments": {"city": "Paris"}\n}\n```',
    '  {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
])
def test_a_call_is_held_back_and_parsed(reply: str) -> None:
    said, calls = split(reply)
    assert said == ""
    assert [(n, json.loads(a)) for n, a in calls] == [("get_weather", {"city": "Paris"})]


def test_text_before_a_call_is_said_and_several_calls_are_read() -> None:
    said, calls = split('Let me check. <tool_call>{"name": "a", "arguments": {}}</tool_call>'
                        '\n<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>')
    assert said == "Let me check. "
    assert calls == [("a", "{}"), ("b", '{"x": 1}')]


def test_plain_text_streams_through_unchanged() -> None:
    reply = "It is sunny in Paris, <b>21</b> degrees; a < b."
    text = ToolCallText()
    pieces = [text.push(reply[i:i + 4]) for i in range(0, len(reply), 4)]
    assert text.finish() == (reply[len("".join(pieces)):], ())
    assert "".join(pieces).startswith("It is sunny")  # said as it comes, not at the end


def test_json_that_is_not_a_call_is_not_said() -> None:
    assert split('{"temperature": 21}') == ("", [])
    assert split('{"name": "get weather", "arguments": "{\\"ci') == ("", [])  # cut short
    assert parse_calls('{"name": "a", "arguments": 3}') == ()
    assert parse_calls('{"name": "a"} trailing words') == ()
    ids = {c.id for c in parse_calls('{"name": "a"}\n{"name": "a"}')}
    assert len(ids) == 2  # every call its own id
