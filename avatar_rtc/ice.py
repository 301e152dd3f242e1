"""The ICE servers of every call, from the settings: the server's own peers use them,
and the call page reads them from GET /api/ice before it creates its peer."""

from __future__ import annotations

from aiohttp import web

from avatar_rtc.settings import IceSettings
from signaling.ice import IceConfig

ICE = web.AppKey("ice", IceConfig)


def ice_config(settings: IceSettings) -> IceConfig:
    return IceConfig(
        stun_urls=tuple(settings.stun_urls),
        turn_urls=tuple(settings.turn_urls),
        turn_username=settings.turn_username,
        turn_credential=settings.turn_credential,
        turn_secret=settings.turn_secret,
        turn_ttl_s=settings.turn_ttl_s,
        relay_only=settings.relay_only,
    )


async def ice_servers(request: web.Request) -> web.Response:
    """GET /api/ice (no auth): the page's RTCConfiguration, with TURN credentials
    issued for this request when a TURN secret is set."""
    # Credentials are per call: no cache may hand them to another caller.
    return web.json_response(request.app[ICE].for_page(),
                             headers={"Cache-Control": "no-store"})


def setup(app: web.Application, config: IceConfig) -> None:
    app[ICE] = config
    app.router.add_get("/api/ice", ice_servers)
