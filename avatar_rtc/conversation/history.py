"""The chat history of one call: only what the user really heard of the agent."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from avatar_rtc.backends.base import ChatMessage
from avatar_rtc.conversation.tool_use import ToolUse, tool_messages

# Appended to an interrupted reply so the model sees it was cut off mid-sentence.
INTERRUPTED_MARK = "…"


@dataclass(frozen=True)
class Exchange:
    user: str
    agent: str  # the part that was played out
    interrupted: bool
    # The tools called before the answer that finished (a result or an error): even
    # when the user cut the reply short, the model knows they ran.
    tools: tuple[ToolUse, ...] = ()


class History:
    def __init__(self, max_turns: int) -> None:
        self._exchanges: collections.deque[Exchange] = collections.deque(maxlen=max(1, max_turns))

    def add(self, user: str, agent: str, *, interrupted: bool,
            tools: tuple[ToolUse, ...] = ()) -> None:
        self._exchanges.append(Exchange(user, agent, interrupted,
                                        tuple(t for t in tools if t.finished)))

    @property
    def exchanges(self) -> list[Exchange]:
        return list(self._exchanges)

    def messages(self, system_prompt: str, user: str) -> list[ChatMessage]:
        return [*self.context(system_prompt), ChatMessage("user", user)]

    def context(self, system_prompt: str) -> list[ChatMessage]:
        """The conversation before the next user message."""
        messages = [ChatMessage("system", system_prompt)] if system_prompt else []
        for exchange in self._exchanges:
            messages.append(ChatMessage("user", exchange.user))
            messages.extend(tool_messages(exchange.tools))
            agent = exchange.agent
            if exchange.interrupted:
                agent = f"{agent}{INTERRUPTED_MARK}" if agent else INTERRUPTED_MARK
            messages.append(ChatMessage("assistant", agent))
        return messages
