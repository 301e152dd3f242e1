"""One JSON error path for every route, root app and admin API alike, and one root for
avatar_rtc's own exceptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_rtc.admin.audio import AudioDecodeError, ClipError
from avatar_rtc.admin.files import OutsideDataDir
from avatar_rtc.backup import BackupError
from avatar_rtc.caller import CallerError
from avatar_rtc.calls import CallFailed, CallRefused
from avatar_rtc.errors import AvatarError
from avatar_rtc.http_errors import ApiError
from avatar_rtc.replay.errors import ReplayError
from avatar_rtc.settings import SettingsError
from avatar_rtc.state import STATE
from avatar_rtc.storage import SchemaTooNewError, StorageError, StoreClosedError
from avatar_rtc.voices import NotDrivable, UnknownVoice
from tests.fake_server import ClientFactory, settings_for, start

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("error", [
    ApiError, AudioDecodeError, ClipError, OutsideDataDir, NotDrivable, UnknownVoice,
    BackupError, SettingsError, CallerError, StorageError, SchemaTooNewError,
    StoreClosedError, ReplayError, CallRefused, CallFailed,
])
def test_every_error_of_ours_derives_from_the_one_root(error: type[Exception]) -> None:
    assert issubclass(error, AvatarError)


async def test_aiohttp_errors_are_json_on_the_root_app_and_the_admin_api(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, _ = await start(aiohttp_client, settings_for(tmp_path))
    for path in ("/health", "/admin/api/stats"):
        response = await client.post(path)
        assert response.status == 405, path
        assert "GET" in response.headers["Allow"]
        assert (await response.json())["error"] == "Method Not Allowed"
    response = await client.get("/no/such/page")
    assert response.status == 404
    assert (await response.json())["error"] == "Not Found"
    response = await client.get(f"/admin/api/calls/{'0' * 8}")
    assert response.status == 400 and (await response.json()) == {"error": "invalid id"}


async def test_while_models_load_every_route_that_needs_them_says_so(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app = await start(aiohttp_client, settings_for(tmp_path))
    app[STATE].ready.clear()  # as before the backends have loaded
    for method, path in (("POST", "/offer"), ("GET", "/api/voices"),
                         ("GET", "/admin/api/backends")):
        response = await client.request(method, path, data=b"{}")
        assert response.status == 503, path
        assert response.headers["Retry-After"] == "5"
        assert (await response.json()) == {"error": "warming up: models are loading"}
