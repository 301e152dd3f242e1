"""Shared fixtures: real models loaded once, and a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub

from avatar_rtc.app import create_app
from avatar_rtc.backends.registry import Backends, load_backends
from avatar_rtc.settings import Settings
from avatar_rtc.state import STATE, AppState

# Fixtures for every test: a real PostgreSQL server, a database on it, either engine.
from tests.postgres import database_url, pg_server, postgres_url  # noqa: F401


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """An event loop in its own thread: the server keeps serving while a test blocks
    (Selenium) or runs its own loop (aiortc client)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 120.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def server_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    settings = Settings()
    settings.server.host = "127.0.0.1"
    settings.ice.host_addresses = ["127.0.0.1"]
    settings.storage.data_dir = str(data_dir)
    settings.llm.temperature = 0.0  # repeatable replies
    # The tests' clients are on loopback; tests of the token pass admin__token or
    # admin__loopback_only=False.
    settings.admin.loopback_only = True
    for dotted, value in overrides.items():
        section, _, key = dotted.partition("__")
        setattr(getattr(settings, section), key, value)
    return settings


@pytest.fixture(scope="session")
def real_backends(server_loop: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Backends:
    """The embedded default models, loaded and warmed up once per test session."""
    settings = make_settings(tmp_path_factory.mktemp("models"))
    backends: Backends = server_loop.run(load_backends(settings), timeout=300)
    return backends


class LiveServer:
    def __init__(self, loop: LoopThread, app: web.Application, runner: web.AppRunner,
                 url: str) -> None:
        self.loop = loop
        self.app = app
        self.runner = runner
        self.url = url

    @property
    def state(self) -> AppState:
        return self.app[STATE]

    def turns(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Turns stored in the server's SQLite database (all calls, or one)."""

        async def read() -> list[dict[str, Any]]:
            store = self.state.store
            assert store is not None
            await asyncio.gather(*self.state.background, return_exceptions=True)
            calls = [call_id] if call_id else [c.id for c in (await store.list_calls(1000))[0]]
            result: list[dict[str, Any]] = []
            for cid in reversed(calls):
                result.extend(dataclasses.asdict(t) for t in await store.turns(cid))
            return result

        turns: list[dict[str, Any]] = self.loop.run(read())
        return turns

    def stop(self) -> None:
        self.loop.run(self.runner.cleanup())


@pytest.fixture
def start_server(
    server_loop: LoopThread, real_backends: Backends, tmp_path: Path
) -> Iterator[Callable[..., LiveServer]]:
    """Starts a real server with the real models; settings overrides as section__key=v."""
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        settings = make_settings(tmp_path / f"data{len(servers)}", **overrides)
        port = free_port()
        settings.server.port = port

        async def boot() -> tuple[web.Application, web.AppRunner]:
            app = create_app(settings, backends=real_backends)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            await asyncio.wait_for(app[STATE].ready.wait(), 60)
            return app, runner

        app, runner = server_loop.run(boot())
        server = LiveServer(server_loop, app, runner, f"http://127.0.0.1:{port}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        # Backends are shared across tests: keep them open, close the rest.
        server.state.backends = None
        server.stop()


def storyteller(start_server: Callable[..., LiveServer], *, max_sentences: int,
                max_tokens: int = 200, **settings: Any) -> LiveServer:
    """A real server whose model always answers with a long story."""
    return start_server(
        llm__system_prompt="You are a storyteller. Always answer with a long story of at "
        "least ten sentences.",
        llm__max_tokens=max_tokens,
        llm__max_sentences=max_sentences,
        **settings,
    )


@pytest.fixture
def live_server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server()


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/plugin_backend (the echo backends), installed as a user would: offline,
    into a folder of its own, once per session."""
    build = tmp_path_factory.mktemp("plugin")
    source = build / "avatar-rtc-echo-backends"
    shutil.copytree(Path(__file__).parent / "plugin_backend", source)  # pip builds in place
    target = build / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--no-build-isolation", "--quiet", "--target", str(target), str(source)],
                   check=True, timeout=300)
    return target
