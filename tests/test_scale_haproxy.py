"""Many workers behind a real HAProxy (deploy/haproxy.cfg, on 127.0.0.1): two real
`avatar-rtc serve` processes sharing one PostgreSQL database and one data folder,
real aiortc calls through the balancer. The workers load the echo backends of
tests/plugin_backend (the models are not what is tested here), Silero VAD for real."""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from avatar_rtc.caller import Caller, CallerError
from tests.conftest import free_port
from tests.speech import speak

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
TOKEN = "cluster-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def haproxy() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                        if os.path.exists("/usr/sbin/haproxy") else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is not installed (tools/setup --test installs it)")
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    return found


def test_shipped_haproxy_config_is_valid() -> None:
    done = subprocess.run([haproxy(), "-c", "-f", str(DEPLOY / "haproxy.cfg")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shipped_compose_file_names_every_part() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"haproxy", "worker1", "worker2", "postgres", "coturn", "vllm"} <= set(services)
    # The workers share the database and the data folder: that is what makes them one.
    for name in ("worker1", "worker2"):
        env = services[name]["environment"]
        assert env["AVATAR_STORAGE_DATABASE_URL"].startswith("postgresql://")
        assert any(v.endswith(":/srv/avatar") for v in services[name]["volumes"])
    assert "--enable-auto-tool-choice" in services["vllm"]["command"]
    # The balancer sends calls to the ports the workers listen on, and the LLM to vLLM.
    balanced = re.findall(r"(?m)^    server worker\d 127\.0\.0\.1:(\d+) ",
                          (DEPLOY / "haproxy.cfg").read_text())
    assert balanced == [services[w]["environment"]["AVATAR_SERVER_PORT"]
                        for w in ("worker1", "worker2")]
    assert "--port 8001" in services["vllm"]["command"]
    assert "server vllm1 127.0.0.1:8001 " in (DEPLOY / "haproxy.cfg").read_text()
    assert "use-auth-secret" in " ".join(services["coturn"]["command"])


def test_shipped_systemd_unit_drains_on_sigterm() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(DEPLOY / "avatar-rtc@.service")
    service = unit["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert service["ExecStart"].endswith("avatar-rtc serve --server-port %i")
    # Longer than the calls may take to end once draining (server.drain_timeout_s).
    assert int(service["TimeoutStopSec"]) >= 600



def balancer_config(workers: dict[str, int], port: int, llm_port: int, sock: Path) -> str:
    """deploy/haproxy.cfg with loopback addresses, and a runtime socket to watch it."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    text = text.replace("    bind :8080", f"    bind 127.0.0.1:{port}")
    text = text.replace("    bind :8000", f"    bind 127.0.0.1:{llm_port}")
    for shipped, name in ((8081, "worker1"), (8082, "worker2")):
        text = text.replace(f"127.0.0.1:{shipped} ", f"127.0.0.1:{workers[name]} ")
    text = text.replace("127.0.0.1:8001", f"127.0.0.1:{free_port()}")
    return text.replace("global\n", f"global\n    stats socket {sock} level admin\n", 1)


class Cluster:
    def __init__(self, tmp: Path, url: str, workers: dict[str, int],
                 procs: list[subprocess.Popen[bytes]], balancer: subprocess.Popen[str],
                 port: int, sock: Path) -> None:
        self.tmp, self.url, self.workers, self.procs = tmp, url, workers, procs
        self.balancer, self.port, self.sock = balancer, port, sock
        self.log: list[str] = []

    def worker_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.workers[name]}"

    def command(self, line: str) -> str:
        """One command on HAProxy's runtime API."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.sock))
            s.sendall(line.encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode()

    def states(self) -> dict[str, int]:
        """HAProxy's view of each worker: 2 up, 0 down."""
        states: dict[str, int] = {}
        for line in self.command("show servers state workers").splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "workers":
                states[fields[3]] = int(fields[5])
        return states

    async def until(self, want: dict[str, int], timeout_s: float = 15.0) -> None:
        async with asyncio.timeout(timeout_s):
            # HAProxy changes it, in another process: poll (hence noqa ASYNC110).
            while {k: v for k, v in self.states().items() if k in want} != want:  # noqa: ASYNC110
                await asyncio.sleep(0.1)

    def served(self, request: str) -> list[tuple[str, int, str]]:
        """(worker, status, retries) of each ``request`` ("POST /offer") HAProxy passed
        on, from its log; retries starts with "+" when it went to another worker."""
        out: list[tuple[str, int, str]] = []
        for line in self.log:
            m = re.search(r" calls workers/(\S+) \S+ (\d{3}) \d+ \S+ \S+ \S+ "
                          r"\d+/\d+/\d+/\d+/(\+?\d+) ", line)
            if m and f'"{request} ' in line:
                out.append((m.group(1), int(m.group(2)), m.group(3)))
        return out


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=5):
                return  # 200: loaded, room for a call
        except OSError:  # not listening yet, or 503 while loading
            pass
        time.sleep(0.3)
    raise AssertionError(f"worker {url} never ready: {log.read_text()[-3000:]}")


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, plugin_site: Path) -> Iterator[Cluster]:
    shared = tmp_path / "shared"  # the folder every worker mounts
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), str(REPO)]),
           "AVATAR_STORAGE_DATABASE_URL": postgres_url, "HF_HUB_OFFLINE": "1"}
    workers = {"worker1": free_port(), "worker2": free_port()}
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for name, port in workers.items():
            log = tmp_path / f"{name}.log"
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "avatar_rtc", "serve", "--server-port", str(port),
                 "--server-max-calls", "1", "--ice-host-addresses", "127.0.0.1",
                 "--stt-backend", "echo-stt", "--llm-backend", "echo-llm",
                 "--tts-backend", "tone-tts", "--turn-model", "none",
                 "--storage-data-dir", str(shared), "--admin-token", TOKEN],
                env=env, cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT))
        for port, proc, log in zip(workers.values(), procs, logs, strict=True):
            _wait_ready(f"http://127.0.0.1:{port}", proc, log)
        port, sock = free_port(), tmp_path / "haproxy.sock"
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(balancer_config(workers, port, free_port(), sock))
        balancer = subprocess.Popen([haproxy(), "-db", "-f", str(cfg)], text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        result = Cluster(tmp_path, f"http://127.0.0.1:{port}", workers, procs, balancer,
                         port, sock)
        assert balancer.stdout is not None
        stream = balancer.stdout

        def read() -> None:
            for line in stream:
                result.log.append(line)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert balancer.poll() is None and time.monotonic() < deadline, result.log
            time.sleep(0.05)
        try:
            yield result
        finally:
            balancer.terminate()
            balancer.wait(10)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _ready(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{url}/ready") as r:
        return r.status, await r.json()


async def test_calls_spread_over_workers_that_share_storage(cluster: Cluster) -> None:
    speech = speak("Hello, what is the capital of France?")
    async with aiohttp.ClientSession() as http:
        await cluster.until({"worker1": 2, "worker2": 2})
        first = Caller(cluster.url)
        await first.connect()
        busy = [n for n in cluster.workers
                if (await _ready(http, cluster.worker_url(n)))[0] == 503]
        assert len(busy) == 1, busy
        _, body = await _ready(http, cluster.worker_url(busy[0]))
        assert body == {"ready": False, "reason": "full", "calls": 1, "max_calls": 1}
        other = next(n for n in cluster.workers if n != busy[0])
        # (c) once its /ready says 503 the full worker is out of the pool: no offer
        # reaches it, not even one to be refused and retried.
        await cluster.until({busy[0]: 0, other: 2})
        for _ in range(4):  # leastconn would take turns between two idle workers
            async with http.get(f"{cluster.url}/health") as r:
                assert r.status == 200
        second = Caller(cluster.url)
        await second.connect()
        await cluster.until({"worker1": 0, "worker2": 0})
        assert [w for w, _, _ in cluster.served("GET /health")] == [other] * 4, cluster.log
        offers = cluster.served("POST /offer")
        assert [(w, s) for w, s, _ in offers] == [(busy[0], 200), (other, 200)], cluster.log
        assert [r for _, _, r in offers] == ["0", "0"]  # never refused, never retried
        # Every worker full: HAProxy's own 503, which says when to come back.
        async with http.post(f"{cluster.url}/offer", data=b"{}") as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "5"
            assert "full" in (await r.json())["error"]
        with pytest.raises(CallerError, match="503"):
            await Caller(cluster.url).connect()

        # Both calls connected to their own worker: media never passed HAProxy.
        ids = []
        for caller in (first, second):
            caller.say(speech, 48000)
            end = await caller.wait_event("turn_end", timeout_s=60)
            assert end.get("interrupted") is not True
            ids.append(caller.session_id)
            await caller.close()

        # (b) the admin API of either worker, here through the balancer, sees both
        # workers' calls and turns (one PostgreSQL database) ...
        async with asyncio.timeout(30):
            while True:
                async with http.get(f"{cluster.url}/admin/api/calls", headers=AUTH) as r:
                    assert r.status == 200
                    items = {c["id"]: c for c in (await r.json())["items"]}
                if all(i in items and items[i]["ended_at"] and items[i]["turns"] >= 1
                       and items[i]["has_recording"] for i in ids):
                    break
                await asyncio.sleep(0.3)
        # ... and every worker serves every recording, whichever one wrote it (one
        # shared data folder; call ids are UUIDs, so names never collide).
        for name in cluster.workers:
            for call_id in ids:
                async with http.get(f"{cluster.worker_url(name)}/admin/api/calls/"
                                    f"{call_id}/recording?track=agent", headers=AUTH) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.read())[:4] == b"OggS"

        # An offer that reaches a full worker between two health checks: kept in the
        # pool by hand here, it refuses with 503 and HAProxy sends the same POST
        # (body and all) to the other worker, where the call connects.
        await cluster.until({"worker1": 2, "worker2": 2}, timeout_s=30)
        third = Caller(cluster.url)
        await third.connect()
        [full] = [n for n in cluster.workers
                  if (await _ready(http, cluster.worker_url(n)))[0] == 503]
        free = next(n for n in cluster.workers if n != full)
        await cluster.until({full: 0})
        cluster.command(f"disable health workers/{full}")
        cluster.command(f"set server workers/{full} health up")
        await cluster.until({full: 2, free: 2})
        for _ in range(3):  # equal loads take turns: make the full worker next
            async with http.get(f"{cluster.url}/health") as r:
                assert r.status == 200
            await asyncio.sleep(0.1)  # the log line is written after the answer
            if cluster.served("GET /health")[-1][0] == free:
                break
        fourth = Caller(cluster.url)
        await fourth.connect()
        await asyncio.sleep(0.2)
        assert cluster.served("POST /offer")[-1] == (free, 200, "+1"), cluster.log
        _, body = await _ready(http, cluster.worker_url(free))
        assert body["reason"] == "full"
        await third.close()
        await fourth.close()
