"""Tools in-process on llama.cpp: offered through the model's own chat template when it
has them (Qwen2.5), not at all when it does not (SmolLM2)."""

from __future__ import annotations

import json
import os

import pytest

from avatar_rtc.backends.base import ChatMessage, ToolCall, ToolCalls, ToolSpec
from avatar_rtc.backends.llm_llamacpp import LlamaCppLlm
from avatar_rtc.conversation.tool_use import results_in_words
from avatar_rtc.settings import DEFAULT_SYSTEM_PROMPT
from tests.qwen_model import missing, qwen_gguf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WEATHER = ToolSpec("get_weather", "The current weather in a city",
                   {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]})
QUESTION = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT),
            ChatMessage("user", "What's the weather in Paris?")]


@pytest.mark.skipif(bool(missing()) and not os.environ.get("CI"),
                    reason=f"needs {', '.join(missing())}")
async def test_qwen_calls_a_tool_and_answers_from_its_result() -> None:
    llm = LlamaCppLlm(str(qwen_gguf()), max_tokens=60, temperature=0.0, max_contexts=1)
    try:
        deltas = [d async for d in llm.stream(QUESTION, session="s", tools=[WEATHER])]
        assert "".join(deltas) == ""  # the call is not said
        [call] = next(d for d in deltas if isinstance(d, ToolCalls)).calls
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
        # Its result goes back through the template's own tool messages...
        answered = [*QUESTION, ChatMessage("assistant", "", tool_calls=(call,)),
                    ChatMessage("tool", '{"sky": "sunny", "celsius": 21}',
                                tool_call_id=call.id)]
        prompt = llm.prompt_text(answered, [WEATHER])
        assert '<tool_response>\n{"sky": "sunny", "celsius": 21}\n</tool_response>' in prompt
        assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
        # ... and, made to answer, the model reads it as a note (tool_use.py).
        answer = "".join([d async for d in llm.stream(results_in_words(answered, 1),
                                                      session="s")])
    finally:
        await llm.aclose()
    assert "sunny" in answer.lower() or "21" in answer, answer


async def test_a_template_without_tools_is_not_offered_them() -> None:
    llm = LlamaCppLlm(max_tokens=8, temperature=0.0, max_contexts=1)  # SmolLM2
    try:
        plain = [d async for d in llm.stream(QUESTION)]
        offered = [d async for d in llm.stream(QUESTION, tools=[WEATHER])]
        called = ToolCall("c", "get_weather", '{"city": "Paris"}')
        # A history with a call renders anyway (as the template can).
        assert llm.prompt([*QUESTION, ChatMessage("assistant", "", tool_calls=(called,))])
    finally:
        await llm.aclose()
    assert offered == plain and not any(isinstance(d, ToolCalls) for d in offered)
