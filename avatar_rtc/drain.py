"""Stopping with live calls (SIGTERM, Ctrl-C): drain, then close.

Draining: /offer answers 503 with Retry-After and /health says "draining", while the
calls in progress go on until they end or ``server.drain_timeout_s`` passes; a second
signal ends the wait at once. Then the app's cleanup closes what is left ("shutdown"),
stores every finished turn and the recordings, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Any

from aiohttp import web

from avatar_rtc.state import STATE, AppState

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def drain(state: AppState, timeout_s: float, hurry: asyncio.Event | None = None) -> None:
    """Refuses new calls, then waits up to ``timeout_s`` for the live ones to end
    (or until ``hurry`` is set)."""
    state.draining = True
    peers = state.registry.peers()
    log.info("draining: %d live calls may go on for up to %.0f s", len(peers), timeout_s)
    if not peers:
        return
    ended = asyncio.ensure_future(asyncio.gather(*(p.closed.wait() for p in peers)))
    waits: set[asyncio.Future[Any]] = {ended}
    if hurry is not None:
        waits.add(asyncio.ensure_future(hurry.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    left = len(state.registry)
    if left:
        log.info("drain over: closing %d calls still live", left)


async def serve(app: web.Application, host: str, port: int, drain_timeout_s: float, *,
                ssl_context: ssl.SSLContext | None = None) -> None:
    """Serves ``app`` (over TLS with ``ssl_context``) until SIGTERM or SIGINT, then
    drains and cleans up."""
    runner = web.AppRunner(app)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal)
        await stop.wait()
        await drain(app[STATE], drain_timeout_s, hurry)
    finally:
        await runner.cleanup()  # closes the calls left, stores their turns
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
