"""Headers every response carries: what the pages may load, and no framing or sniffing.

Set on `on_response_prepare`, not in a middleware, so that static files, aiohttp's
own errors and the admin sub-app's answers carry them too.
"""

from __future__ import annotations

from aiohttp import web

# The pages load only their own scripts and styles, no inline ones. Audio the admin
# pages fetch with the token plays from blob: URLs; the favicon is a data: URL.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # CORS stays closed: no other origin may read an answer, whatever a handler set.
    for name in [n for n in response.headers if n.lower().startswith("access-control-")]:
        del response.headers[name]


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
