"""HTTP routes of the root app: the call page, SDP negotiation, voices, health, readiness,
metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from avatar_rtc.admin.app import add_admin
from avatar_rtc.admin.resources import ready_backends
from avatar_rtc.bearer import require_bearer
from avatar_rtc.calls import CALLS, CallFailed, CallRefused
from avatar_rtc.http_errors import ApiError
from avatar_rtc.openapi import OPENAPI, document, openapi_json
from avatar_rtc.ratelimit import RateLimiter
from avatar_rtc.state import STATE
from avatar_rtc.voices import drivable_by, loaded_backends
from signaling.offer import OfferError, parse_offer

MAX_PUBLIC_VOICES = 1000
# Per client address; absent when server.offer_rate_per_min is 0.
OFFER_LIMITER = web.AppKey("offer_limiter", RateLimiter)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[STATE].static_dir / "index.html")


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, object] = {
        "ready": state.ready.is_set(),
        "backends": state.backends.describe() if state.backends else {},
        "calls": state.registry.connected(),
        "max_calls": state.registry.max_peers,
        "pending": state.registry.pending(),
    }
    if state.load_error:
        body["error"] = state.load_error
    if state.draining:  # a load balancer sends new callers elsewhere
        body["draining"] = True
    ok = state.ready.is_set() and not state.draining
    return web.json_response(body, status=200 if ok else 503)


async def ready(request: web.Request) -> web.Response:
    """GET /ready: may this worker take a call now? The balancer's health check: cheap,
    no database query. 503 takes the worker out of the pool until it says 200 again."""
    state = request.app[STATE]
    calls, max_calls = len(state.registry), state.registry.max_peers
    reason = None
    if state.draining:
        reason = "draining"
    elif state.load_error:
        reason = "failed"
    elif not state.ready.is_set():
        reason = "loading"
    elif calls >= max_calls - state.settings.server.ready_headroom:
        reason = "full"
    if reason is not None:
        return web.json_response({"ready": False, "reason": reason, "calls": calls,
                                  "max_calls": max_calls}, status=503)
    return web.json_response({"ready": True, "calls": calls, "max_calls": max_calls})


async def offer(request: web.Request) -> web.Response:
    """POST /offer: an SDP offer in, the answer out; the call service does the rest."""
    calls = request.app[CALLS]
    limiter = request.app.get(OFFER_LIMITER)
    if limiter is not None:
        limiter.check(request.remote or "unknown", "offers")
    try:
        # Before reading the body: a refused caller waits, not uploads.
        calls.admit(request.remote)
        answer = await calls.start(parse_offer(await _body(request)),
                                   user_agent=request.headers.get("User-Agent"),
                                   remote_addr=request.remote)
    except OfferError as exc:
        raise ApiError(400, str(exc)) from None
    except CallRefused as exc:
        retry = None if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
        raise ApiError(503, str(exc), headers=retry) from None
    except CallFailed as exc:
        raise ApiError(500, str(exc)) from None
    return web.json_response({"sdp": answer.sdp, "type": "answer", "session_id": answer.call_id})


async def _body(request: web.Request) -> bytes:
    """The body, within the time allowed for a request's headers: a client that
    claims more than it sends holds no handler for long."""
    timeout_s = request.app[STATE].settings.server.keepalive_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, f"body not received within {timeout_s:g} s", close=True) from None


async def voices(request: web.Request) -> web.Response:
    """GET /api/voices (no auth): what the call page may offer as "voice"."""
    state = request.app[STATE]
    backends = ready_backends(state)
    loaded = loaded_backends(backends)
    items: list[dict[str, Any]] = []
    if state.store is not None:
        profiles, _ = await state.store.list_profiles(limit=MAX_PUBLIC_VOICES)
        for profile in profiles:
            able = drivable_by(profile)
            items.append({"id": profile.id, "name": profile.name, "backend": profile.backend,
                          "drivable_by": able, "active": any(b in loaded for b in able)})
    return web.json_response({"default": backends.tts.default_voice().name, "items": items})


async def metrics(request: web.Request) -> web.Response:
    token = request.app[STATE].settings.server.metrics_token
    if token:
        require_bearer(request, token, setting="server.metrics_token", what="metrics token")
    body, content_type = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup(app: web.Application, static: Path) -> None:
    settings = app[STATE].settings
    rate = settings.server.offer_rate_per_min
    if rate > 0:
        app[OFFER_LIMITER] = RateLimiter(rate)
    # Without admin.loopback_only the admin API always wants a token (set or made).
    app[OPENAPI] = document(metrics=settings.server.metrics,
                            admin_token=bool(settings.admin.token)
                            or not settings.admin.loopback_only,
                            metrics_token=bool(settings.server.metrics_token))
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_post("/offer", offer)
    app.router.add_get("/api/voices", voices)
    app.router.add_get("/openapi.json", openapi_json)
    if settings.server.metrics:
        app.router.add_get("/metrics", metrics)
    add_admin(app)
    app.router.add_static("/static/", static, follow_symlinks=False)
