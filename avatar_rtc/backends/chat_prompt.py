"""Chat messages rendered into a GGUF model's prompt tokens with its own template."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from avatar_rtc.backends.base import BackendError, ChatMessage, ToolSpec

Conversation = list[ChatMessage]

# Stands for the next user message's text while a conversation is rendered.
_NEXT_USER = "\x00next user message\x00"


def conversation_of(messages: list[ChatMessage]) -> Conversation:
    return list(messages)


def _arguments(text: str) -> Any:
    """A call's arguments as the template expects them: an object (Qwen's `tojson`)."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


def _payload(conversation: Conversation) -> Any:
    payload = []
    for m in conversation:
        message: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                for c in m.tool_calls]
        if m.role == "tool":
            message["tool_call_id"] = m.tool_call_id
        payload.append(message)
    return payload


def _tools(tools: Sequence[ToolSpec]) -> Any:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools] or None


class ChatPrompt:
    """Renders conversations into tokens with the GGUF's own chat template, the way
    llama-cpp-python's chat completion does, so generation and prefill agree."""

    def __init__(self, llama: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError("llm", "the GGUF model has no chat template "
                                      "(tokenizer.chat_template); use an instruct model")
        eos = llama.token_eos()
        bos = llama.token_bos()
        def text(token: int) -> str:
            return str(llama.detokenize([token], special=True).decode("utf-8", "ignore"))

        # A template that reads `tools` offers them to the model (Qwen2.5's does;
        # SmolLM2's does not).
        self.supports_tools = "tools" in template
        self._format = Jinja2ChatFormatter(template=template, eos_token=text(eos),
                                           bos_token=text(bos), stop_token_ids=[eos])

    def render(self, llama: Any, conversation: Conversation,
               tools: Sequence[ToolSpec] = ()) -> tuple[list[int], list[str]]:
        """The prompt for the assistant's reply, and the stop strings."""
        result = self._format(messages=_payload(conversation), tools=_tools(tools))
        stops = result.stop if isinstance(result.stop, list) else [result.stop or ""]
        return _tokens(llama, result.prompt, result.added_special), [s for s in stops if s]

    def open_user(self, llama: Any, conversation: Conversation, words: str = "",
                  tools: Sequence[ToolSpec] = ()) -> list[int]:
        """The prompt's tokens up to the next user message's first `words` (tokenized
        together with what precedes them, as in the whole prompt)."""
        result = self._format(
            messages=_payload([*conversation, ChatMessage("user", _NEXT_USER)]),
            tools=_tools(tools))
        head = result.prompt.split(_NEXT_USER)[0]
        return _tokens(llama, head + words, result.added_special)


def _tokens(llama: Any, prompt: str, added_special: bool) -> list[int]:
    return list(llama.tokenize(prompt.encode(), add_bos=not added_special, special=True))
