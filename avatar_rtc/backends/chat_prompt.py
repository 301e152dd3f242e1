"""Chat messages rendered into a GGUF model's prompt tokens with its own template."""

from __future__ import annotations

from typing import Any

from avatar_rtc.backends.base import BackendError, ChatMessage

Conversation = list[tuple[str, str]]

# Stands for the next user message's text while a conversation is rendered.
_NEXT_USER = "\x00next user message\x00"


def conversation_of(messages: list[ChatMessage]) -> Conversation:
    return [(m.role, m.content) for m in messages]


def _payload(conversation: Conversation) -> Any:
    return [{"role": role, "content": text} for role, text in conversation]


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

        self._format = Jinja2ChatFormatter(template=template, eos_token=text(eos),
                                           bos_token=text(bos), stop_token_ids=[eos])

    def render(self, llama: Any, conversation: Conversation) -> tuple[list[int], list[str]]:
        """The prompt for the assistant's reply, and the stop strings."""
        result = self._format(messages=_payload(conversation))
        stops = result.stop if isinstance(result.stop, list) else [result.stop or ""]
        return _tokens(llama, result.prompt, result.added_special), [s for s in stops if s]

    def open_user(self, llama: Any, conversation: Conversation, words: str = "") -> list[int]:
        """The prompt's tokens up to the next user message's first `words` (tokenized
        together with what precedes them, as in the whole prompt)."""
        result = self._format(messages=_payload([*conversation, ("user", _NEXT_USER)]))
        head = result.prompt.split(_NEXT_USER)[0]
        return _tokens(llama, head + words, result.added_special)


def _tokens(llama: Any, prompt: str, added_special: bool) -> list[int]:
    return list(llama.tokenize(prompt.encode(), add_bos=not added_special, special=True))
