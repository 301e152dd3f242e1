"""Short-lived TURN credentials from a secret shared with the TURN server.

The TURN REST API scheme (coturn's ``use-auth-secret``): the user name is
``"<unix expiry>:<label>"`` and the password is base64(HMAC-SHA1(secret, user name)).
The TURN server recomputes the password from the name and refuses a name whose
expiry has passed, so nothing is stored and nothing needs revoking.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

# coturn splits the user name at its first ":" (its --rest-api-separator).
SEPARATOR = ":"


@dataclass(frozen=True)
class TurnCredentials:
    username: str
    credential: str
    expires_at: int  # unix seconds


def credential_for(secret: str, username: str) -> str:
    """The password the TURN server expects for ``username``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def issue(secret: str, ttl_s: int, *, label: str | None = None,
          now: float | None = None) -> TurnCredentials:
    """Credentials valid for ``ttl_s`` seconds from ``now``; the label (random by
    default) only tells the TURN server's log who the user was."""
    if not secret:
        raise ValueError("a TURN secret is needed")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be > 0")
    if label is None:
        label = secrets.token_hex(8)
    elif not label or SEPARATOR in label:
        raise ValueError(f"label must be non-empty without {SEPARATOR!r}")
    expires_at = int(time.time() if now is None else now) + ttl_s
    username = f"{expires_at}{SEPARATOR}{label}"
    return TurnCredentials(username, credential_for(secret, username), expires_at)
