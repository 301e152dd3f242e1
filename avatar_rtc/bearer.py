"""Bearer tokens: read from the Authorization header only, compared in constant time.

Never from a cookie or the query string: a browser sends cookies with cross-site
requests on its own, and URLs end up in logs and Referer headers.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from avatar_rtc.http_errors import ApiError


def bearer(request: web.Request, setting: str, hint: str = "") -> str:
    """The request's bearer token; 401 naming `setting` (and `hint`) when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise ApiError(401, f"missing bearer token: send 'Authorization: Bearer <{setting}>'"
                            + (f"; {hint}" if hint else ""),
                       headers={"WWW-Authenticate": "Bearer"})
    return credentials.strip()


def same_token(given: str, expected: str) -> bool:
    # Constant time, on bytes: compare_digest refuses non-ASCII str.
    return hmac.compare_digest(given.encode(errors="surrogateescape"),
                               expected.encode(errors="surrogateescape"))


def require_bearer(request: web.Request, expected: str, *, setting: str, what: str,
                   hint: str = "") -> None:
    """401 without a token, 403 with a wrong one ("invalid <what>")."""
    if not same_token(bearer(request, setting, hint), expected):
        raise ApiError(403, f"invalid {what}")
