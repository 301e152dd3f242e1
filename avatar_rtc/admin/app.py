"""The admin sub-application, mounted by the main app at /admin."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from avatar_rtc.admin import history, profiles
from avatar_rtc.admin.auth import AdminAccess, auth_middleware
from avatar_rtc.admin.origin import same_origin
from avatar_rtc.admin.ratelimit import rate_limit_middleware
from avatar_rtc.state import STATE, AppState


def create_admin_app(state: AppState) -> web.Application:
    """The /admin/api routes. Their errors, ApiError and aiohttp's own (405, 413 on a
    JSON body), are answered as JSON by the parent's json_errors middleware, which runs
    around these."""
    admin = state.settings.admin
    access = AdminAccess.from_settings(state.settings)
    # Order matters: writes from other sites are refused first, then who may call,
    # then how often they may write.
    middlewares: list[Middleware] = [same_origin, auth_middleware(access)]
    limiter = rate_limit_middleware(admin.write_rate_per_min)
    if limiter is not None:
        middlewares.append(limiter)
    app = web.Application(middlewares=middlewares)
    app[STATE] = state
    app.cleanup_ctx.append(access.startup)  # the server's own token, if it needs one
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
