"""TURN REST API credentials, the ICE configuration built from the settings, and
GET /api/ice (fake models: no TURN server needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCIceTransportPolicy

from avatar_rtc.settings import SettingsError, as_dict, load
from signaling.ice import IceConfig, configuration_from_page
from signaling.peers import PeerLimits, PeerRegistry
from signaling.turn_credentials import credential_for, issue
from tests.fake_server import ClientFactory, settings_for, start

# Computed apart from this code: printf '1700000000:avatar' |
#   openssl dgst -sha1 -hmac north-wind -binary | base64
VECTOR = ("north-wind", "1700000000:avatar", "5DJyBL94yTkddDdzxvRoZPhfekY=")
TURN_URL = "turn:turn.example:3478?transport=udp"


def test_the_password_is_base64_hmac_sha1_of_the_user_name() -> None:
    secret, username, password = VECTOR
    assert credential_for(secret, username) == password
    issued = issue(secret, 300, label="avatar", now=1_699_999_700.9)
    assert (issued.username, issued.credential, issued.expires_at) == (
        username, password, 1_700_000_000)


def test_issued_names_are_unique_and_labels_checked() -> None:
    first, second = issue("s", 60), issue("s", 60)
    assert first.username != second.username
    expiry, _, label = first.username.partition(":")
    assert expiry.isdigit() and len(label) == 16
    for bad in ("", "a:b"):
        with pytest.raises(ValueError, match="label"):
            issue("s", 60, label=bad)
    with pytest.raises(ValueError, match="secret"):
        issue("", 60)
    with pytest.raises(ValueError, match="ttl_s"):
        issue("s", 0)


def test_static_credentials_and_no_servers() -> None:
    assert IceConfig().for_page() == {"iceServers": [], "iceTransportPolicy": "all"}
    assert IceConfig().configuration().iceServers == []  # never aiortc's public default
    page = IceConfig(stun_urls=("stun:stun.example:3478",), turn_urls=(TURN_URL,),
                     turn_username="bob", turn_credential="pw").for_page()
    assert page == {"iceServers": [
        {"urls": ["stun:stun.example:3478"]},
        {"urls": [TURN_URL], "username": "bob", "credential": "pw"},
    ], "iceTransportPolicy": "all"}


def test_a_secret_issues_fresh_valid_credentials_each_time() -> None:
    config = IceConfig(turn_urls=(TURN_URL,), turn_secret="north-wind", turn_ttl_s=600,
                       relay_only=True)
    a, b = (config.for_page() for _ in range(2))
    assert a["iceTransportPolicy"] == "relay"
    servers = [page["iceServers"][0] for page in (a, b)]  # type: ignore[index]
    assert servers[0]["username"] != servers[1]["username"]
    for server in servers:
        assert server["credential"] == credential_for("north-wind", server["username"])
    configuration = config.configuration()
    assert configuration.iceTransportPolicy == RTCIceTransportPolicy.RELAY
    assert "north-wind" not in repr(config)  # safe to log
    assert configuration.iceServers and configuration.iceServers[0].username


def test_the_page_configuration_converts_back_for_aiortc() -> None:
    page = IceConfig(turn_urls=(TURN_URL,), turn_secret="x", relay_only=True).for_page()
    configuration = configuration_from_page(page)
    assert configuration.iceTransportPolicy == RTCIceTransportPolicy.RELAY
    assert configuration.iceServers is not None
    server = configuration.iceServers[0]
    assert server.urls == [TURN_URL] and server.credential == credential_for("x", server.username
                                                                             or "")
    for bad, message in (([], "iceServers list"), ({"iceServers": [{}]}, "without urls"),
                         ({"iceServers": [], "iceTransportPolicy": "p2p"}, "p2p"),
                         ({"iceServers": [{"urls": "turn:x", "credential": 1}]}, "strings")):
        with pytest.raises(ValueError, match=message):
            configuration_from_page(bad)


async def test_each_peer_of_the_registry_gets_its_own_configuration() -> None:
    made: list[RTCConfiguration] = []

    def configuration() -> RTCConfiguration:
        made.append(RTCConfiguration(iceServers=[]))
        return made[-1]

    registry = PeerRegistry(2, PeerLimits(), configuration)
    peers = [registry.create(), registry.create()]
    assert len(made) == 2
    await asyncio.gather(*(peer.close("test") for peer in peers))


def test_settings_check_and_mask_the_turn_secret() -> None:
    settings = load(env={"AVATAR_ICE_TURN_URLS": TURN_URL, "AVATAR_ICE_TURN_SECRET": "hush",
                         "AVATAR_ICE_TURN_TTL_S": "900", "AVATAR_ICE_RELAY_ONLY": "true"})
    assert (settings.ice.turn_secret, settings.ice.turn_ttl_s, settings.ice.relay_only) == (
        "hush", 900, True)
    data = as_dict(settings)
    assert data["ice"]["turn_secret"] == "***" and "hush" not in repr(data)
    for env, message in (
        ({"AVATAR_ICE_TURN_SECRET": "s", "AVATAR_ICE_TURN_USERNAME": "bob"}, "exclude"),
        ({"AVATAR_ICE_TURN_SECRET": "s", "AVATAR_ICE_TURN_TTL_S": "10"}, "turn_ttl_s"),
        ({"AVATAR_ICE_RELAY_ONLY": "1"}, "relay_only needs ice.turn_urls"),
    ):
        with pytest.raises(SettingsError, match=message):
            load(env=env)


async def test_api_ice_serves_fresh_credentials_uncached(aiohttp_client: ClientFactory,
                                                         tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings.ice.turn_urls = [TURN_URL]
    settings.ice.turn_secret = "north-wind"
    settings.ice.relay_only = True
    client, _ = await start(aiohttp_client, settings)
    bodies = []
    for _ in range(2):
        response = await client.get("/api/ice")
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        bodies.append(await response.json())
    assert [b["iceTransportPolicy"] for b in bodies] == ["relay", "relay"]
    first, second = (b["iceServers"][0] for b in bodies)
    assert first["urls"] == [TURN_URL] and first["username"] != second["username"]
    assert first["credential"] == credential_for("north-wind", first["username"])
    # The secret itself never leaves the server.
    assert "north-wind" not in repr(bodies)
