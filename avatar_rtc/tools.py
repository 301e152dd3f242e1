"""The tools operators declare in the settings (`[[llm.tools]]`, docs/tools.md), run
for the model: an HTTP endpoint POSTed the arguments as JSON, or a Python function.

Each call has the tool's timeout; a failure of any kind is a ToolFailed whose message
the model reads, never an exception that ends the reply. A synchronous function runs on
a thread, so it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from avatar_rtc.backends.base import ToolCall, ToolSpec
from avatar_rtc.conversation.tool_use import ToolFailed
from avatar_rtc.settings.sections import ToolSettings

log = logging.getLogger(__name__)

# What the model reads back: a tool that answers a page must not fill its context.
MAX_RESULT_CHARS = 4000


class Toolbox:
    """Runs the declared tools by name (conversation/tool_use.py's ToolRunner)."""

    def __init__(self, tools: Sequence[ToolSettings]) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self._specs = tuple(ToolSpec(t.name, t.description, t.parameters) for t in tools)

    @property
    def specs(self) -> Sequence[ToolSpec]:
        return self._specs

    async def run(self, call: ToolCall) -> str:
        tool = self._tools.get(call.name)
        if tool is None:
            raise ToolFailed(f"there is no tool named {call.name!r}")
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            raise ToolFailed("the arguments are not JSON") from None
        if not isinstance(arguments, dict):
            raise ToolFailed("the arguments are not a JSON object")
        try:
            async with asyncio.timeout(tool.timeout_s):
                if tool.url:
                    result = await _post(tool.url, arguments)
                else:
                    result = await _call(tool.entry_point, arguments)
        except TimeoutError:
            raise ToolFailed(f"no answer within {tool.timeout_s:g} s") from None
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False,
                                                                 default=str)
        return text[:MAX_RESULT_CHARS]


async def _post(url: str, arguments: dict[str, Any]) -> Any:
    try:
        async with aiohttp.ClientSession() as http, http.post(url, json=arguments) as response:
            body = await response.text()
            if response.status >= 400:
                raise ToolFailed(f"HTTP {response.status}: {body[:200]}")
    except aiohttp.ClientError as exc:
        raise ToolFailed(f"cannot reach the tool: {type(exc).__name__}: {exc}") from None
    try:
        return json.loads(body)
    except ValueError:
        return body  # plain text is a result too


@functools.cache
def resolve(entry_point: str) -> Callable[..., Any]:
    """The function named "module:function" (attributes after the colon, dotted)."""
    module_name, _, attribute = entry_point.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ToolFailed(f"cannot load {entry_point}: {exc}") from None
    if not callable(target):
        raise ToolFailed(f"{entry_point} is not callable")
    return target  # type: ignore[no-any-return]


async def _call(entry_point: str, arguments: dict[str, Any]) -> Any:
    function = resolve(entry_point)
    try:
        if inspect.iscoroutinefunction(function):
            return await function(**arguments)
        result = await asyncio.to_thread(function, **arguments)
        if inspect.isawaitable(result):
            return await result
        return result
    except ToolFailed:
        raise
    except Exception as exc:  # the tool's own failure: the model is told
        log.info("tool %s raised %s", entry_point, type(exc).__name__, exc_info=True)
        raise ToolFailed(f"{type(exc).__name__}: {exc}") from None
