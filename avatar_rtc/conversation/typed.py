"""What the page sends on the "events" channel: a typed message, a user turn like a
spoken one (docs/protocol.md, "The page's messages").

Anything else is refused with a precise reason, which the call sends back as an
`error` event: a bad message never ends the call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# A typed turn is a question, not a document: the model's context stays small.
MAX_TEXT_CHARS = 2000
# Checked before parsing, so a huge message costs no JSON work on the event loop.
MAX_MESSAGE_BYTES = 16 * 1024


class MessageError(ValueError):
    """A message from the page that the server cannot take; str() says why."""


@dataclass(frozen=True)
class TypedText:
    text: str  # stripped, never empty


def parse_message(raw: str | bytes) -> TypedText:
    """The page's message; MessageError for anything that is not a valid one."""
    if isinstance(raw, bytes):
        raise MessageError("messages are JSON text, not binary")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message over {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(raw)
    except ValueError:
        raise MessageError("message is not JSON") from None
    if not isinstance(message, dict):
        raise MessageError("message is not a JSON object")
    kind = message.get("type")
    if kind != "text":
        raise MessageError(f"unknown message type {kind!r}" if isinstance(kind, str)
                           else "message has no string \"type\"")
    text = message.get("text")
    if not isinstance(text, str):
        raise MessageError("text: must be a string")
    text = " ".join(text.split())  # one line, as a transcript would be
    if not text:
        raise MessageError("text: empty")
    if len(text) > MAX_TEXT_CHARS:
        raise MessageError(f"text: over {MAX_TEXT_CHARS} characters")
    try:  # a "\ud800" escape parses to a lone surrogate, which nothing can store
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageError("text: not valid Unicode") from None
    return TypedText(text)
