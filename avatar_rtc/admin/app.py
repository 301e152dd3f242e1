"""The admin sub-application, mounted by the main app at /admin."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from avatar_rtc.admin import history, profiles
from avatar_rtc.admin.auth import auth_middleware
from avatar_rtc.admin.ratelimit import rate_limit_middleware
from avatar_rtc.state import STATE, AppState


def create_admin_app(state: AppState) -> web.Application:
    """The /admin/api routes. Their errors, ApiError and aiohttp's own (405, 413 on a
    JSON body), are answered as JSON by the parent's json_errors middleware, which runs
    around these."""
    admin = state.settings.admin
    # Order matters: who may call first, then how often they may write.
    middlewares: list[Middleware] = [auth_middleware(admin.token)]
    limiter = rate_limit_middleware(admin.write_rate_per_min)
    if limiter is not None:
        middlewares.append(limiter)
    app = web.Application(middlewares=middlewares)
    app[STATE] = state
    profiles.add_routes(app)
    history.add_routes(app)
    return app


async def index_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[STATE].static_dir / "admin" / "index.html")


async def calls_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[STATE].static_dir / "admin" / "calls.html")


async def admin_root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/admin/")


def add_admin(app: web.Application) -> None:
    """The pages (no auth: they hold no data) and the API."""
    app.router.add_get("/admin", admin_root)
    app.router.add_get("/admin/", index_page)
    app.router.add_get("/admin/calls", calls_page)
    app.add_subapp("/admin", create_admin_app(app[STATE]))
