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
from tests.conftest import make_settings
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
