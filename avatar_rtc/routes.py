"""HTTP routes of the root app: the call page, SDP negotiation, voices, health, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from avatar_rtc.admin.app import add_admin
from avatar_rtc.admin.resources import ready_backends
from avatar_rtc.calls import CALLS, CallFailed, CallRefused
from avatar_rtc.http_errors import ApiError
from avatar_rtc.state import STATE
from avatar_rtc.voices import drivable_by, loaded_backends
from signaling.offer import OfferError, parse_offer

MAX_PUBLIC_VOICES = 1000


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[STATE].static_dir / "index.html")


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, object] = {
        "ready": state.ready.is_set(),
        "backends": state.backends.describe() if state.backends else {},
        "calls": len(state.registry),
        "max_calls": state.registry.max_peers,
    }
    if state.load_error:
        body["error"] = state.load_error
    if state.draining:  # a load balancer sends new callers elsewhere
        body["draining"] = True
    ok = state.ready.is_set() and not state.draining
    return web.json_response(body, status=200 if ok else 503)


async def offer(request: web.Request) -> web.Response:
    """POST /offer: an SDP offer in, the answer out; the call service does the rest."""
    calls = request.app[CALLS]
    try:
        calls.admit()  # before reading the body: a refused caller waits, not uploads
        answer = await calls.start(parse_offer(await request.read()),
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
    body, content_type = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup(app: web.Application, static: Path) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_post("/offer", offer)
    app.router.add_get("/api/voices", voices)
    if app[STATE].settings.server.metrics:
        app.router.add_get("/metrics", metrics)
    add_admin(app)
    app.router.add_static("/static/", static, follow_symlinks=False)
