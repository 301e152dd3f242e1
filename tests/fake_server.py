"""A real server with fake models under pytest-aiohttp: fast tests of the HTTP surface
and call lifecycle with real aiortc peers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from avatar_rtc.app import create_app
from avatar_rtc.settings import Settings
from avatar_rtc.state import STATE
from tests.conftest import LiveServer, LoopThread, free_port, make_settings
from tests.fakes import fake_backends

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    """Loopback settings with quick endpointing, so fake turns end fast."""
    settings = make_settings(tmp_path, **overrides)
    settings.vad.min_speech_ms = 96
    settings.vad.end_silence_ms = 200
    return settings


async def start(aiohttp_client: ClientFactory, settings: Settings,
                **backends: object) -> tuple[TestClient[Any, Any], web.Application]:
    app = create_app(settings, backends=fake_backends(**backends))
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[STATE].ready.wait(), 10)
    return client, app


def base_url(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("")).rstrip("/")


def serve_fake(loop: LoopThread, tmp_path: Path, **overrides: Any) -> LiveServer:
    """A real server with fake models on 127.0.0.1 in `loop`'s thread, for tests that
    block (hypothesis, schemathesis); stop it with `.stop()`."""
    settings = settings_for(tmp_path, **overrides)
    settings.server.port = free_port()

    async def boot() -> tuple[web.Application, web.AppRunner]:
        app = create_app(settings, backends=fake_backends())
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.server.port).start()
        await asyncio.wait_for(app[STATE].ready.wait(), 10)
        return app, runner

    app, runner = loop.run(boot())
    return LiveServer(loop, app, runner, f"http://127.0.0.1:{settings.server.port}")
