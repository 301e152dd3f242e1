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
    except RecursionError:  # "[[[[…" a few thousand deep
        raise OfferError("body is not valid JSON: nested too deeply") from None
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


DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")


def check_sdp(sdp: str) -> None:
    """Structural checks aiortc would otherwise fail on with obscure errors."""
    lines = [line.strip() for line in sdp.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise OfferError("SDP must start with v=0")
    for line in lines:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise OfferError(f"SDP line is not of the form x=...: {line[:40]!r}")
    sections = _media_sections(lines)
    if not any(media[0].startswith("m=audio ") for media in sections):
        raise OfferError("SDP offers no audio (m=audio)")
    for media in sections:
        _check_media(media)
    mids = [line.removeprefix("a=mid:") for line in lines if line.startswith("a=mid:")]
    if len(set(mids)) != len(mids):
        raise OfferError("SDP has a duplicate a=mid: each media section needs its own")
    if not any(line.startswith("a=ice-ufrag:") for line in lines) or not any(
            line.startswith("a=ice-pwd:") for line in lines):
        raise OfferError("SDP has no ICE credentials (a=ice-ufrag and a=ice-pwd)")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise OfferError("SDP has no DTLS fingerprint (a=fingerprint)")


def _media_sections(lines: list[str]) -> list[list[str]]:
    """Each m= line with the lines up to the next one."""
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    return sections


def _check_media(media: list[str]) -> None:
    fields = media[0][2:].split()
    # m=<media> <port> <proto> <fmt> ...
    if len(fields) < 4 or not fields[1].partition("/")[0].isdigit():
        raise OfferError(f"SDP media line is malformed: {media[0][:40]!r}")
    if fields[0] in ("audio", "video") and fields[1] != "0" and not any(
            line in DIRECTIONS for line in media):
        # RFC 3264 would default to sendrecv; aiortc fails on it instead, and browsers
        # always send one.
        raise OfferError(f"SDP m={fields[0]} section has no direction "
                         "(a=sendrecv, a=sendonly, a=recvonly or a=inactive)")
