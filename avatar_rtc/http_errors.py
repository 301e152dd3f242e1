"""Errors as JSON: `ApiError` for handlers to raise, one middleware that answers them.

The middleware sits on the root app; aiohttp runs a parent's middlewares around its
sub-apps' handlers too, so the admin API answers its errors through it as well.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from avatar_rtc.errors import AvatarError


class ApiError(AvatarError):
    """Raised by a handler; answered as `{"error": message}` with this status."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        # Close the connection after answering: the rest of the body stays unread.
        self.close = close

    def response(self) -> web.Response:
        response = web.json_response({"error": self.message}, status=self.status,
                                     headers=self.headers)
        if self.close:
            response.force_close()
        return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error the server answers is JSON: its own and aiohttp's (413, 405, 404)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        # After a 413 the rest of the body is unread: the connection cannot go on.
        return ApiError(exc.status, exc.reason, headers=allow,
                        close=exc.status == 413).response()
