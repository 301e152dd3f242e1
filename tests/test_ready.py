"""GET /ready, the balancer's health check: a real server (fake models), a real call."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_rtc.caller import Caller
from avatar_rtc.settings import SettingsError
from avatar_rtc.state import STATE
from tests.fake_server import ClientFactory, base_url, settings_for, start


async def test_ready_says_full_headroom_calls_before_max_calls(
        aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    client, app = await start(aiohttp_client, settings_for(
        tmp_path, server__max_calls=2, server__ready_headroom=1))
    response = await client.get("/ready")
    assert response.status == 200
    assert await response.json() == {"ready": True, "calls": 0, "max_calls": 2}
    async with Caller(base_url(client)):
        response = await client.get("/ready")
        assert response.status == 503
        assert await response.json() == {"ready": False, "reason": "full", "calls": 1,
                                         "max_calls": 2}
        # Full for the balancer, yet /offer still admits: a racing offer finds room.
        async with Caller(base_url(client)) as second:
            assert second.session_id is not None
    state = app[STATE]
    state.draining = True
    response = await client.get("/ready")
    assert response.status == 503 and (await response.json())["reason"] == "draining"
    state.draining = False
    state.ready.clear()
    response = await client.get("/ready")
    assert response.status == 503 and (await response.json())["reason"] == "loading"
    state.ready.set()
    state.load_error = "RuntimeError: no model"
    assert (await (await client.get("/ready")).json())["reason"] == "failed"


def test_headroom_must_leave_room_for_a_call(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, server__max_calls=2, server__ready_headroom=2)
    with pytest.raises(SettingsError, match=r"server\.ready_headroom must be 0 to max_calls - 1"):
        settings.validate()
