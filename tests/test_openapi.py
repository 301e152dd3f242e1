"""GET /openapi.json describes every route, and schemathesis fuzzes the admin API
from it on a real server (fake models) with a temporary SQLite store: no 500, and
what was stored before is still there, intact."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.web_urldispatcher import PrefixedSubAppResource, StaticResource
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from avatar_rtc.storage import CallRecord, VoiceProfileRecord, new_id, utc_now
from avatar_rtc.storage.db import DEFAULT_DB_NAME
from tests.conftest import LiveServer, LoopThread
from tests.fake_server import serve_fake

pytestmark = pytest.mark.timeout(180)

EXAMPLES = 8  # per operation: 20 admin operations


def routes(app: web.Application) -> set[tuple[str, str]]:
    """(path, method) of every route, sub-apps included; HEAD and static files left out."""
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        if isinstance(resource, PrefixedSubAppResource):
            found |= routes(resource._app)  # its routes carry the prefix already
        elif not isinstance(resource, StaticResource):
            found |= {(resource.canonical, route.method.lower())
                      for route in resource if route.method != "HEAD"}
    return found


@pytest.fixture
def server(server_loop: LoopThread, tmp_path: Path) -> Iterator[LiveServer]:
    live = serve_fake(server_loop, tmp_path, admin__write_rate_per_min=0)
    yield live
    live.stop()


@pytest.mark.parametrize("metrics", [True, False])
def test_the_document_lists_exactly_the_routes(server_loop: LoopThread, tmp_path: Path,
                                               metrics: bool) -> None:
    live = serve_fake(server_loop, tmp_path, server__metrics=metrics)
    try:
        document = requests.get(f"{live.url}/openapi.json", timeout=10).json()
        described = {(path, method) for path, item in document["paths"].items()
                     for method in item if method != "parameters"}
        assert described == routes(live.app)
        assert document["openapi"].startswith("3.")
    finally:
        live.stop()


def test_schemathesis_finds_no_server_error_in_the_admin_api(server: LiveServer) -> None:
    store = server.state.store
    assert store is not None
    now = utc_now()
    profile = VoiceProfileRecord(id=new_id(), name="Ada", backend="piper", created_at=now,
                                 updated_at=now, params={"voice": "fake", "speed": 1.0})
    call = CallRecord(id=new_id(), started_at=now, ended_at=now, end_reason="closed")

    async def seed() -> None:
        await store.create_profile(profile)
        await store.create_call(call)

    server.loop.run(seed())
    document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    admin = [op for op in operations if op.path.startswith("/admin/api/")]
    assert len(admin) >= 15
    session = requests.Session()
    for operation in admin:

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, session=session, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        fuzz()

    async def read() -> tuple[VoiceProfileRecord | None, CallRecord | None]:
        await asyncio.gather(*server.state.background, return_exceptions=True)
        return await store.get_profile(profile.id), await store.get_call(call.id)

    stored_profile, stored_call = server.loop.run(read())
    assert stored_profile is not None and dataclasses.asdict(stored_profile) == (
        dataclasses.asdict(profile))
    assert stored_call is not None and stored_call.end_reason == "closed"
    db = Path(server.state.settings.storage.data_dir) / DEFAULT_DB_NAME
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
