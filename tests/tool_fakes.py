"""A scripted model that calls tools, and a tool runner that can be held: the tool-call
loop's unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from avatar_rtc.backends.base import ChatMessage, ToolCall, ToolCalls, ToolSpec
from avatar_rtc.backends.cpu_gate import CpuGate
from avatar_rtc.backends.priority import Priority
from avatar_rtc.conversation.tool_use import ToolFailed
from tests.fakes import FakeLlm

CLOCK = ToolSpec("clock", "The current time", {"type": "object", "properties": {}})


def call(name: str = "clock", arguments: str = "{}", id: str = "call_1") -> ToolCall:
    return ToolCall(id=id, name=name, arguments=arguments)


@dataclass
class ToolLlm(FakeLlm):
    """Answers each request with the next of `script`: text, or the tool calls it makes
    (after `said`, text before them). Records the tools each request was offered."""

    script: list[str | tuple[ToolCall, ...]] = field(default_factory=list)
    offered: list[tuple[ToolSpec, ...]] = field(default_factory=list)
    gate_s: float = 0.0  # each request waits this long before its first token

    async def stream(  # type: ignore[override]
        self, messages: list[ChatMessage], gate: CpuGate | None = None, *, session: str = "",
        priority: Priority | None = None, tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[str]:
        self.requests.append(list(messages))
        self.offered.append(tuple(tools))
        step = self.script.pop(0) if self.script else self.reply
        await asyncio.sleep(self.gate_s)
        if isinstance(step, tuple):
            yield ToolCalls(step)
            return
        for word in step.split(" "):
            await asyncio.sleep(self.token_delay_s)
            yield word + " "


@dataclass
class FakeRunner:
    """Tools by name: each returns its result, or waits on `hold` first."""

    results: dict[str, str] = field(default_factory=lambda: {"clock": '{"time": "12:00"}'})
    hold: asyncio.Event | None = None
    runs: list[ToolCall] = field(default_factory=list)
    cancelled: list[ToolCall] = field(default_factory=list)

    @property
    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec(n, f"the {n} tool", {"type": "object", "properties": {}})
                for n in self.results]

    async def run(self, call: ToolCall) -> str:
        self.runs.append(call)
        try:
            if self.hold is not None:
                await self.hold.wait()
        except asyncio.CancelledError:
            self.cancelled.append(call)
            raise
        if call.name not in self.results:
            raise ToolFailed(f"there is no tool named {call.name!r}")
        return self.results[call.name]


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Waits for a fake's state (they signal nothing)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polled: the fakes have no event
            await asyncio.sleep(0.005)
