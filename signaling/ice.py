"""ICE settings: which servers to use and which host addresses to offer."""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

_original_get_host_addresses = aioice.ice.get_host_addresses


def rtc_configuration(
    stun_urls: Sequence[str] = (),
    turn_urls: Sequence[str] = (),
    turn_username: str = "",
    turn_credential: str = "",
) -> RTCConfiguration:
    """An explicit server list, empty by default.

    With no iceServers at all aiortc falls back to a public STUN server and waits for
    it offline; an explicit empty list keeps every call on the machine's own addresses.
    """
    servers: list[RTCIceServer] = []
    if stun_urls:
        servers.append(RTCIceServer(urls=list(stun_urls)))
    if turn_urls:
        servers.append(
            RTCIceServer(urls=list(turn_urls), username=turn_username, credential=turn_credential)
        )
    return RTCConfiguration(iceServers=servers)


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Sets the host addresses ICE offers, process-wide (aioice has no per-peer option).

    aioice never offers loopback on its own; a loopback deployment or test names it
    here. An empty list restores aioice's own choice.
    """
    if not addresses:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses
