"""The aiohttp application: its routes, its state, and the resources started and stopped
together. Only the CLI (and tests) import this module; handlers import avatar_rtc.state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from avatar_rtc import ice, recordings, routes, security_headers
from avatar_rtc.backends.registry import Backends, load_backends
from avatar_rtc.calls import CALLS, CallService
from avatar_rtc.http_errors import json_errors
from avatar_rtc.metrics import Metrics
from avatar_rtc.settings import Settings
from avatar_rtc.state import STATE, AppState
from avatar_rtc.storage import Store, default_url
from media.latency import set_audio_prefetch
from signaling.consent import patient_consent
from signaling.ice import restrict_host_addresses
from signaling.peers import PeerLimits, PeerRegistry

log = logging.getLogger(__name__)

# aiohttp's limits on a request's head, stated here so they are the server's own: a
# longer line or field, or more fields, is answered 400 and the connection closed.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 64


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
    restrict_host_addresses(settings.ice.host_addresses)
    patient_consent()
    ice_config = ice.ice_config(settings.ice)
    set_audio_prefetch(settings.server.inbound_jitter_frames)
    registry = PeerRegistry(
        settings.server.max_calls,
        PeerLimits(
            connect_timeout_s=settings.server.connect_timeout_s,
            disconnect_grace_s=settings.server.disconnect_grace_s,
            max_duration_s=settings.server.call_max_s,
            idle_timeout_s=settings.server.idle_timeout_s,
        ),
        ice_config.configuration,  # per peer: fresh TURN credentials
        max_pending=settings.server.max_pending_offers,
        max_pending_per_address=settings.server.max_pending_per_address,
    )
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[json_errors],
        handler_args={
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_FIELD_BYTES,
            "max_headers": MAX_HEADERS,
            "keepalive_timeout": settings.server.keepalive_timeout_s,
        },
    )
    static = static_dir(settings)
    state = AppState(
        settings=settings, registry=registry, static_dir=static, backends=backends,
        metrics=Metrics(active_calls=registry.connected),
    )
    app[STATE] = state
    app[CALLS] = CallService(state)
    # Cleanup runs in reverse: peers close first, so their last turns reach the store.
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(recordings.sweeper_ctx)  # retention and the disk cap
    app.cleanup_ctx.append(_backends_ctx)
    app.cleanup_ctx.append(_peers_ctx)
    ice.setup(app, ice_config)
    routes.setup(app, static)
    security_headers.setup(app)
    return app
