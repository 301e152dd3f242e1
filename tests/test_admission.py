"""GPU admission control: the decision with injected memory probes, then /offer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from avatar_rtc.admission import GIB, Admission, GpuMemory, default_probe, torch_probe
from avatar_rtc.app import create_app
from avatar_rtc.backends.registry import Backends
from avatar_rtc.state import STATE
from tests.conftest import make_settings
from tests.fakes import fake_backends

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def fixed(used_gib: float, total_gib: float = 80.0) -> Callable[[], GpuMemory]:
    return lambda: GpuMemory(free=int((total_gib - used_gib) * GIB), total=int(total_gib * GIB))


def test_refuses_above_the_memory_fraction() -> None:
    admission = Admission(max_memory_fraction=0.9, probe=fixed(73.0), device="cuda:0")
    refusal = admission.check(0)
    assert refusal is not None and refusal.retry_after_s > 0
    assert refusal.reason == ("cuda:0 memory 91% used (73.0 of 80.0 GiB), "
                              "above gpu.max_memory_fraction 90%")
    assert Admission(max_memory_fraction=0.9, probe=fixed(71.0)).check(0) is None


def test_refuses_at_the_call_limit() -> None:
    admission = Admission(max_calls=2, max_memory_fraction=0.9, probe=fixed(1.0))
    assert admission.check(1) is None
    refusal = admission.check(2)
    assert refusal is not None and refusal.reason == "server full: 2 of 2 calls"


def test_no_gpu_or_a_broken_probe_never_refuses(caplog: pytest.LogCaptureFixture) -> None:
    assert Admission(max_memory_fraction=0.5).check(100) is None
    assert Admission(max_memory_fraction=0.5).describe() == ""

    def broken() -> GpuMemory:
        raise RuntimeError("NVML: driver gone")

    assert Admission(max_memory_fraction=0.5, probe=broken).check(0) is None
    assert "driver gone" in caplog.text


def test_fraction_one_turns_the_memory_check_off() -> None:
    calls: list[int] = []

    def probe() -> GpuMemory:
        calls.append(1)
        return GpuMemory(free=0, total=GIB)

    assert Admission(max_memory_fraction=1.0, probe=probe).check(0) is None
    assert calls == []


def test_default_probe_on_this_machine() -> None:
    """Without torch loaded and NVML, there is no probe; with them, it reads real numbers."""
    probe = default_probe(0)
    if probe is None:
        assert torch_probe(0) is None
        return
    memory = probe()
    assert 0 < memory.free <= memory.total


async def test_offer_answers_503_with_the_reason(aiohttp_client: ClientFactory,
                                                 tmp_path: Path) -> None:
    backends: Backends = fake_backends()
    probe_result = {"used": 75.0}
    backends.admission = Admission(
        max_memory_fraction=0.9, device="cuda:0",
        probe=lambda: fixed(probe_result["used"])(),
    )
    app = create_app(make_settings(tmp_path), backends=backends)
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[STATE].ready.wait(), 10)

    response = await client.post("/offer", data=b"{not json")
    assert response.status == 503 and int(response.headers["Retry-After"]) > 0
    assert "memory 94% used" in (await response.json())["error"]

    health = await (await client.get("/health")).json()
    assert health["backends"]["gpu"] == "cuda:0: 75.0 of 80.0 GiB used (admits below 90%)"

    probe_result["used"] = 10.0  # memory freed: the offer gets through to parsing
    response = await client.post("/offer", data=b"{not json")
    assert response.status == 400 and "not valid JSON" in (await response.json())["error"]
