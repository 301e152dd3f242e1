"""The aiohttp application: typed app state, resources started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from avatar_rtc.backends.registry import Backends, load_backends
from avatar_rtc.call import Call
from avatar_rtc.metrics import Metrics
from avatar_rtc.settings import Settings
from avatar_rtc.storage import Store, default_url
from media.latency import set_audio_prefetch
from signaling.consent import patient_consent
from signaling.ice import restrict_host_addresses, rtc_configuration
from signaling.peers import PeerLimits, PeerRegistry

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    registry: PeerRegistry
    static_dir: Path
    backends: Backends | None = None
    store: Store | None = None
    load_error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    calls: dict[str, Call] = field(default_factory=dict)
    background: set[asyncio.Task[object]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """Runs a fire-and-forget coroutine that shutdown still waits for."""
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


STATE = web.AppKey("state", AppState)


def static_dir(settings: Settings) -> Path:
    if settings.server.static_dir:
        return Path(settings.server.static_dir)
    return Path(__file__).resolve().parent.parent / "static"


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    storage = state.settings.storage
    state.store = await Store.open(storage.database_url or default_url(storage.data_dir))
    yield
    await state.store.close()


async def _backends_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]

    async def load() -> None:
        try:
            if state.backends is None:
                state.backends = await load_backends(state.settings)
            state.ready.set()
        except Exception as exc:
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("backends failed to load")

    # The socket opens at once so /health can say "loading"; /offer waits for ready.
    loader = asyncio.create_task(load(), name="load-backends")
    yield
    loader.cancel()
    await asyncio.gather(loader, return_exceptions=True)
    if state.backends is not None:
        await state.backends.aclose()


async def _peers_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    state = app[STATE]
    await state.registry.close_all("shutdown")
    if state.background:
        await asyncio.gather(*state.background, return_exceptions=True)


def create_app(settings: Settings, *, backends: Backends | None = None) -> web.Application:
    """Builds the server; tests may inject ready-made (or fake) backends."""
    from avatar_rtc import recordings, routes

    restrict_host_addresses(settings.ice.host_addresses)
    patient_consent()
    set_audio_prefetch(settings.server.inbound_jitter_frames)
    registry = PeerRegistry(
        settings.server.max_calls,
        PeerLimits(
            connect_timeout_s=settings.server.connect_timeout_s,
            disconnect_grace_s=settings.server.disconnect_grace_s,
            max_duration_s=settings.server.call_max_s,
            idle_timeout_s=settings.server.idle_timeout_s,
        ),
        rtc_configuration(
            settings.ice.stun_urls,
            settings.ice.turn_urls,
            settings.ice.turn_username,
            settings.ice.turn_credential,
        ),
    )
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[routes.json_errors],
    )
    static = static_dir(settings)
    app[STATE] = AppState(
        settings=settings, registry=registry, static_dir=static, backends=backends,
        metrics=Metrics(active_calls=lambda: len(registry)),
    )
    # Cleanup runs in reverse: peers close first, so their last turns reach the store.
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(recordings.sweeper_ctx)  # retention and the disk cap
    app.cleanup_ctx.append(_backends_ctx)
    app.cleanup_ctx.append(_peers_ctx)
    routes.setup(app, static)
    return app
