"""The tool-call loop of a reply, on fake backends: filler, results in the history,
barge-in during a tool, each call id run once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from avatar_rtc.conversation.tool_use import ToolsConfig
from avatar_rtc.persist import turn_record
from tests.conversation_helpers import CONFIG, harness
from tests.fakes import FakeTts
from tests.tool_fakes import FakeRunner, ToolLlm, call, until

pytestmark = pytest.mark.timeout(30)


def with_tools(runner: FakeRunner, **kwargs: object) -> object:
    return replace(CONFIG, tools=ToolsConfig(runner, **kwargs))  # type: ignore[arg-type]


async def test_a_tool_call_is_run_with_a_filler_and_answered_from_its_result() -> None:
    runner = FakeRunner()
    llm = ToolLlm(script=[(call(),), "It is noon."])
    tts = FakeTts()
    async with harness(with_tools(runner), llm=llm, tts=tts) as h:  # type: ignore[arg-type]
        h.conversation.type_text("What time is it?")
        await h.wait_for("turn_end")
        end = h.of_type("turn_end")[0]
        assert tts.texts == ["One moment.", "It is noon."]  # the filler came first
        assert [e["text"] for e in h.of_type("agent_text")] == tts.texts
        assert end["reply_text"].strip() == "It is noon." and not end["interrupted"]
        assert [c.name for c in runner.runs] == ["clock"]
        assert llm.offered[0] and llm.offered[1]  # tools offered in both rounds
        # The second request carries the call and its result.
        asked, result = llm.requests[1][-2:]
        assert asked.role == "assistant" and asked.tool_calls == (call(),)
        assert (result.role, result.tool_call_id, result.content) == (
            "tool", "call_1", '{"time": "12:00"}')
        stored = turn_record("c", h.turns[0])
        assert stored.tool_calls == [{"id": "call_1", "name": "clock", "arguments": "{}",
                                      "state": "done", "result": '{"time": "12:00"}'}]
        # The next turn's prompt remembers the call and what it returned.
        llm.script = ["Yes."]
        h.conversation.type_text("Thanks. Is that right?")
        await h.wait_for("turn_end", 2)
        roles = [m.role for m in llm.requests[2]]
        assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
        assert runner.runs == [call()]  # not run again


async def test_the_last_round_offers_no_tools_so_the_model_must_answer() -> None:
    runner = FakeRunner()
    llm = ToolLlm(script=[(call(id="a"),), (call(id="b", arguments='{"zone": "UTC"}'),), "Done."])
    async with harness(with_tools(runner, max_rounds=2, filler=""),  # type: ignore[arg-type]
                       llm=llm) as h:
        h.conversation.type_text("Time?")
        await h.wait_for("turn_end")
    assert [bool(o) for o in llm.offered] == [True, True, False]
    assert [c.id for c in runner.runs] == ["a", "b"]
    assert h.of_type("agent_text")[0]["text"] == "Done."  # no filler when it is ""


async def test_one_call_id_is_run_once_in_a_turn() -> None:
    runner = FakeRunner()
    llm = ToolLlm(script=[(call(),), (call(),), "It is noon."])
    async with harness(with_tools(runner), llm=llm) as h:  # type: ignore[arg-type]
        h.conversation.type_text("What time is it?")
        await h.wait_for("turn_end")
    assert len(runner.runs) == 1
    assert h.of_type("turn_end")[0]["reply_text"].strip() == "It is noon."


async def test_a_failing_tool_tells_the_model_why() -> None:
    runner = FakeRunner()
    llm = ToolLlm(script=[(call("weather", '{"city": "Paris"}'),), "I cannot tell."])
    async with harness(with_tools(runner), llm=llm) as h:  # type: ignore[arg-type]
        h.conversation.type_text("Weather in Paris?")
        await h.wait_for("turn_end")
    result = llm.requests[1][-1]
    assert json.loads(result.content) == {"error": "there is no tool named 'weather'"}
    assert turn_record("c", h.turns[0]).tool_calls[0]["state"] == "failed"


async def test_a_barge_in_during_a_tool_cancels_the_wait_and_the_next_turn_works() -> None:
    runner = FakeRunner(hold=asyncio.Event())
    llm = ToolLlm(script=[(call(),)])
    async with harness(with_tools(runner), llm=llm) as h:  # type: ignore[arg-type]
        h.conversation.type_text("What time is it?")
        await until(lambda: bool(runner.runs))
        await h.wait_for("agent_text")  # the filler plays
        llm.script = ["Hello again."]
        h.conversation.type_text("Never mind. Hello!")
        await h.wait_for("turn_end", 2)
        first, second = h.of_type("turn_end")
        assert first["interrupted"] and second["reply_text"].strip() == "Hello again."
        await asyncio.sleep(0.05)
        assert runner.cancelled == [call()]  # the wait was cancelled, not left running
        assert h.conversation.state.value == "listening"
        stored = turn_record("c", h.turns[0])
        assert stored.tool_calls[0]["state"] == "cancelled"
        # A call without a result is not in the history: no dangling tool call.
        assert h.conversation.history.exchanges[0].tools == ()
        assert [m.role for m in llm.requests[-1]] == ["system", "user", "assistant", "user"]


async def test_a_result_that_came_before_the_barge_in_stays_in_the_history() -> None:
    runner = FakeRunner()
    llm = ToolLlm(script=[(call(),), "It is noon, and here is a long story. " * 5],
                  gate_s=0.0)
    async with harness(with_tools(runner), llm=llm) as h:  # type: ignore[arg-type]
        h.conversation.type_text("What time is it?")
        await until(lambda: len(llm.requests) >= 2)  # the tool ran; the answer is coming
        llm.script = ["Sure."]
        h.conversation.type_text("Stop.")
        await h.wait_for("turn_end", 2)
    assert h.of_type("turn_end")[0]["interrupted"]
    [use] = h.conversation.history.exchanges[0].tools
    assert use.result == '{"time": "12:00"}' and len(runner.runs) == 1
    roles = [m.role for m in llm.requests[-1]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]


async def test_a_model_repeating_a_call_gets_its_result_and_must_answer() -> None:
    runner = FakeRunner()
    # The same call under new ids, as a small model that forgets its result asks it.
    llm = ToolLlm(script=[(call(id="a"),), (call(id="b"),), "It is noon."])
    async with harness(with_tools(runner), llm=llm) as h:  # type: ignore[arg-type]
        h.conversation.type_text("What time is it?")
        await h.wait_for("turn_end")
    assert [c.id for c in runner.runs] == ["a"]  # run once
    assert [bool(o) for o in llm.offered] == [True, True, False]  # then no more tools
    answer = llm.requests[1][-1]
    assert (answer.role, answer.tool_call_id) == ("tool", "a")
    # Made to answer, it reads the results as a note in the user's message.
    assert [m.role for m in llm.requests[2]] == ["system", "user"]
    assert llm.requests[2][-1].content == (
        'What time is it?\n\n(Tool results: clock returned {"time": "12:00"}; clock returned '
        '{"time": "12:00"}. Answer from them, in words.)')
    assert h.of_type("turn_end")[0]["reply_text"].strip() == "It is noon."


async def test_a_call_written_when_no_tools_were_offered_is_not_said() -> None:
    runner = FakeRunner()
    llm = ToolLlm(script=[(call(),), '{"name": "clock", "arguments": {}}'])
    tts = FakeTts()
    async with harness(with_tools(runner, max_rounds=1), llm=llm,  # type: ignore[arg-type]
                       tts=tts) as h:
        h.conversation.type_text("What time is it?")
        await h.wait_for("turn_end")
    assert tts.texts == ["One moment."]  # the JSON was not read out
    assert h.of_type("turn_end")[0]["reply_text"].strip() == ""
