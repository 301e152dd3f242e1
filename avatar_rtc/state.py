"""What every handler shares: the typed app state, under the `STATE` app key.

Handlers import this module, never `avatar_rtc.app`, which builds the app from them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from avatar_rtc.backends.registry import Backends
from avatar_rtc.call import Call
from avatar_rtc.metrics import Metrics
from avatar_rtc.settings import Settings
from avatar_rtc.storage import Store
from signaling.peers import PeerRegistry


@dataclass
class AppState:
    settings: Settings
    registry: PeerRegistry
    static_dir: Path
    backends: Backends | None = None  # set once loaded: /offer waits for `ready`
    store: Store | None = None  # open while the app runs
    load_error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    calls: dict[str, Call] = field(default_factory=dict)  # live calls by id
    background: set[asyncio.Task[object]] = field(default_factory=set)
    draining: bool = False  # SIGTERM: no new calls, /ready says so (avatar_rtc.drain)

    def spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """Runs a fire-and-forget coroutine that shutdown still waits for."""
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


STATE = web.AppKey("state", AppState)
