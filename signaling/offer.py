"""Parsing and checking of `POST /offer` bodies, before aiortc ever sees them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_SDP_CHARS = 32 * 1024


class OfferError(ValueError):
    """The offer is malformed; the message says how (sent back as a 400)."""


@dataclass(frozen=True)
class Offer:
    sdp: str
    voice: str | None = None
    echo_cancellation: bool | None = None  # None: the server's setting


def parse_offer(body: bytes) -> Offer:
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OfferError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OfferError("body must be a JSON object")
    if data.get("type") != "offer":
        raise OfferError('"type" must be "offer"')
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferError('"sdp" must be a non-empty string')
    if len(sdp) > MAX_SDP_CHARS:
        raise OfferError(f'"sdp" is longer than {MAX_SDP_CHARS} characters')
    check_sdp(sdp)
    voice = data.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise OfferError('"voice" must be a string or null')
    echo_cancellation = data.get("echo_cancellation")
    if echo_cancellation is not None and not isinstance(echo_cancellation, bool):
        raise OfferError('"echo_cancellation" must be true, false or null')
    return Offer(sdp=sdp, voice=voice or None, echo_cancellation=echo_cancellation)


def check_sdp(sdp: str) -> None:
    """Structural checks aiortc would otherwise fail on with obscure errors."""
    lines = [line.strip() for line in sdp.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise OfferError("SDP must start with v=0")
    for line in lines:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise OfferError(f"SDP line is not of the form x=...: {line[:40]!r}")
    media = [line for line in lines if line.startswith("m=")]
    if not any(line.startswith("m=audio ") for line in media):
        raise OfferError("SDP offers no audio (m=audio)")
    if not any(line.startswith(("a=ice-ufrag:", "a=ice-pwd:")) for line in lines):
        raise OfferError("SDP has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise OfferError("SDP has no DTLS fingerprint (a=fingerprint)")
