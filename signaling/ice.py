"""ICE settings: which servers to use and which host addresses to offer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy

from signaling import turn_credentials

_original_get_host_addresses = aioice.ice.get_host_addresses


@dataclass(frozen=True)
class IceConfig:
    """The STUN and TURN servers both peers of a call use, and whether only relayed
    candidates count.

    With ``turn_secret`` every call of ``servers()`` issues fresh TURN credentials
    (the TURN REST API scheme); without it the static user name and password apply.
    """

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_username: str = ""
    # Out of repr: a config logged by mistake must not carry the secrets.
    turn_credential: str = field(default="", repr=False)
    turn_secret: str = field(default="", repr=False)
    turn_ttl_s: int = 3600
    relay_only: bool = False

    def servers(self, *, now: float | None = None) -> list[RTCIceServer]:
        servers: list[RTCIceServer] = []
        if self.stun_urls:
            servers.append(RTCIceServer(urls=list(self.stun_urls)))
        if self.turn_urls:
            username, credential = self.turn_username, self.turn_credential
            if self.turn_secret:
                issued = turn_credentials.issue(self.turn_secret, self.turn_ttl_s, now=now)
                username, credential = issued.username, issued.credential
            servers.append(RTCIceServer(urls=list(self.turn_urls), username=username,
                                        credential=credential))
        return servers

    @property
    def transport_policy(self) -> RTCIceTransportPolicy:
        return RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL

    def configuration(self) -> RTCConfiguration:
        """An explicit server list, empty by default.

        With no iceServers at all aiortc falls back to a public STUN server and waits
        for it offline; an explicit empty list keeps every call on the machine's own
        addresses.
        """
        return RTCConfiguration(iceServers=self.servers(),
                                iceTransportPolicy=self.transport_policy)

    def for_page(self) -> dict[str, object]:
        """The browser's RTCConfiguration (GET /api/ice), fresh credentials included."""
        servers: list[dict[str, object]] = []
        for server in self.servers():
            item: dict[str, object] = {"urls": server.urls}
            if server.username or server.credential:
                item["username"] = server.username or ""
                item["credential"] = server.credential or ""
            servers.append(item)
        return {"iceServers": servers, "iceTransportPolicy": self.transport_policy.value}


def configuration_from_page(body: object) -> RTCConfiguration:
    """An aiortc configuration from what ``for_page`` serves; ValueError if malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("iceServers"), list):
        raise ValueError("expected an object with an iceServers list")
    servers: list[RTCIceServer] = []
    for item in body["iceServers"]:
        urls = item.get("urls") if isinstance(item, dict) else None
        if not (isinstance(urls, str) or (
                isinstance(urls, list) and all(isinstance(u, str) for u in urls))):
            raise ValueError(f"iceServers entry without urls: {item!r}")
        username, credential = item.get("username"), item.get("credential")
        if not all(v is None or isinstance(v, str) for v in (username, credential)):
            raise ValueError("iceServers username and credential must be strings")
        servers.append(RTCIceServer(urls=urls, username=username, credential=credential))
    try:
        policy = RTCIceTransportPolicy(body.get("iceTransportPolicy", "all"))
    except ValueError:
        raise ValueError(f"unknown iceTransportPolicy {body.get('iceTransportPolicy')!r}") from None
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def rtc_configuration(
    stun_urls: Sequence[str] = (),
    turn_urls: Sequence[str] = (),
    turn_username: str = "",
    turn_credential: str = "",
) -> RTCConfiguration:
    """A configuration with static servers; empty by default (see IceConfig)."""
    return IceConfig(tuple(stun_urls), tuple(turn_urls), turn_username,
                     turn_credential).configuration()


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
