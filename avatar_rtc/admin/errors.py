"""API errors as exceptions, turned into `{"error": ...}` JSON by one middleware."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler


class ApiError(Exception):
    """Raised by a handler; answered as JSON with this status and message."""

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
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
