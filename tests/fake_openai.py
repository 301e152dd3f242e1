"""A scripted OpenAI-compatible chat server on 127.0.0.1: each request gets the next
behaviour of a script (fail, stall, stream then drop), to test the client's transport.
The real llama.cpp server is used wherever the model's answers matter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from tests.conftest import free_port

# "ok", "status:503", "stall" (nothing, forever), "drop:N" (N tokens, then the
# connection is cut), "stall_after:N" (N tokens, then nothing)
Step = str


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeOpenAi:
    def __init__(self, script: list[Step]) -> None:
        self.script = script
        self.requests = 0
        self.url = ""

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model",
                                                              "created": 0, "owned_by": "x"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        step = self.script[min(self.requests, len(self.script) - 1)]
        self.requests += 1
        kind, _, arg = step.partition(":")
        if kind == "status":
            return web.json_response({"error": {"message": "busy"}}, status=int(arg))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if kind == "stall":
            await asyncio.sleep(3600)
        tokens = int(arg) if arg else 3
        for i in range(tokens):
            await response.write(_chunk(f"word{i} "))
        if kind == "drop":
            assert request.transport is not None
            request.transport.abort()  # as a killed server: no end of the chunked body
            return response
        if kind == "stall_after":
            await asyncio.sleep(3600)
        await response.write(_chunk(None, "stop"))
        await response.write(b"data: [DONE]\n\n")
        return response


@asynccontextmanager
async def fake_openai(script: list[Step]) -> AsyncIterator[FakeOpenAi]:
    server = FakeOpenAi(script)
    app = web.Application()
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/chat/completions", server.chat)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        await runner.cleanup()
