"""The declared tools run (avatar_rtc/tools.py): HTTP endpoints on a real local server,
Python entry points, and every way they fail, as errors the model reads."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from avatar_rtc.backends.base import ToolCall
from avatar_rtc.conversation.tool_use import ToolFailed
from avatar_rtc.settings.sections import ToolSettings
from avatar_rtc.tools import MAX_RESULT_CHARS, Toolbox
from tests import tool_plugins

pytestmark = pytest.mark.timeout(30)


def tool(name: str, **where: Any) -> ToolSettings:
    return ToolSettings(name=name, description=name, **where)


def call(name: str, arguments: Any = None) -> ToolCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return ToolCall(id="c1", name=name, arguments=text)


async def test_http_tools_post_the_arguments_and_read_the_answer() -> None:
    asked: list[Any] = []

    async def weather(request: web.Request) -> web.Response:
        asked.append(await request.json())
        return web.json_response({"sky": "sunny"})

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    async def huge(request: web.Request) -> web.Response:
        return web.Response(text="x" * (MAX_RESULT_CHARS * 2))

    async def stuck(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(text="late")

    app = web.Application()
    for path, handler in (("/weather", weather), ("/failing", failing), ("/huge", huge),
                          ("/stuck", stuck)):
        app.router.add_post(path, handler)
    async with TestServer(app, host="127.0.0.1") as server:
        box = Toolbox([tool(n, url=str(server.make_url(f"/{n}")), timeout_s=0.5)
                       for n in ("weather", "failing", "huge", "stuck")])
        assert [s.name for s in box.specs] == ["weather", "failing", "huge", "stuck"]
        assert json.loads(await box.run(call("weather", {"city": "Paris"}))) == {"sky": "sunny"}
        assert asked == [{"city": "Paris"}]
        with pytest.raises(ToolFailed, match="HTTP 503: down for maintenance"):
            await box.run(call("failing"))
        assert len(await box.run(call("huge"))) == MAX_RESULT_CHARS
        started = time.monotonic()
        with pytest.raises(ToolFailed, match=r"no answer within 0\.5 s"):
            await box.run(call("stuck"))
        assert time.monotonic() - started < 2
    box = Toolbox([tool("gone", url="http://127.0.0.1:9/nothing")])
    with pytest.raises(ToolFailed, match="cannot reach the tool"):
        await box.run(call("gone"))


async def test_entry_points_sync_on_a_thread_and_async_on_the_loop() -> None:
    box = Toolbox([
        tool("weather", entry_point="tests.tool_plugins:weather"),
        tool("clock", entry_point="tests.tool_plugins:clock"),
        tool("slow", entry_point="tests.tool_plugins:slow", timeout_s=0.2),
        tool("broken", entry_point="tests.tool_plugins:broken"),
        tool("missing", entry_point="tests.tool_plugins:nowhere"),
        tool("blocking", entry_point="tests.tool_plugins:blocking"),
    ])
    assert json.loads(await box.run(call("weather", {"city": "Paris"}))) == {
        "city": "Paris", "sky": "sunny"}
    assert tool_plugins.CALLS[-1] == "weather on thread"
    assert await box.run(call("clock")) == "14:05"
    with pytest.raises(ToolFailed, match=r"no answer within 0\.2 s"):
        await box.run(call("slow"))
    with pytest.raises(ToolFailed, match="ValueError: the sensor is offline"):
        await box.run(call("broken"))
    with pytest.raises(ToolFailed, match=r"cannot load tests\.tool_plugins:nowhere"):
        await box.run(call("missing"))
    with pytest.raises(ToolFailed, match="TypeError"):  # arguments it does not take
        await box.run(call("weather", {"town": "Paris"}))
    # A blocking tool leaves the event loop free.
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    assert await box.run(call("blocking")) == "done"
    ticker.cancel()
    assert ticks > 10


@pytest.mark.parametrize(("name", "arguments", "error"), [
    ("nope", {}, "there is no tool named 'nope'"),
    ("clock", "{not json", "the arguments are not JSON"),
    ("clock", "[1, 2]", "the arguments are not a JSON object"),
])
async def test_a_bad_call_is_an_error_for_the_model(name: str, arguments: Any,
                                                    error: str) -> None:
    box = Toolbox([tool("clock", entry_point="tests.tool_plugins:clock")])
    with pytest.raises(ToolFailed, match=error):
        await box.run(call(name, arguments))
