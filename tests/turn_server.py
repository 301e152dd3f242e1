"""A real coturn (Debian's ``turnserver``) on 127.0.0.1 for tests of calls through TURN.

It authenticates with the TURN REST API scheme (``--use-auth-secret``), relays only
on loopback, and logs each allocation (``-v``) so a test can see who used it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TURNSERVER = "turnserver"
REALM = "avatar.test"

# Locally a missing coturn skips; in CI (tools/setup --test installs it) it must fail.
needs_coturn = pytest.mark.skipif(
    shutil.which(TURNSERVER) is None and not os.environ.get("CI"),
    reason="needs coturn's turnserver (Debian package coturn)",
)


@dataclass(frozen=True)
class TurnServer:
    port: int
    secret: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def allocations(self) -> list[str]:
        """User names of the relays allocated so far, in order."""
        return re.findall(r"session \S+: new, realm=<[^>]*>, username=<([^>]*)>", self.log())


def _free_udp_and_tcp_port() -> int:
    """A port free for both: coturn listens on UDP and TCP alike."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port for coturn")


def _answers_stun(port: int) -> bool:
    """Whether a STUN binding request to the port gets a success response."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(request, ("127.0.0.1", port))
        try:
            data = sock.recv(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == transaction


@contextlib.contextmanager
def coturn(timeout_s: float = 10.0) -> Iterator[TurnServer]:
    """Starts ``turnserver`` on a free loopback port with a random shared secret."""
    workdir = Path(tempfile.mkdtemp(prefix="avatar-rtc-coturn-"))
    server = TurnServer(_free_udp_and_tcp_port(), secrets.token_hex(16),
                        workdir / "turnserver.log")
    args = [
        TURNSERVER, "-n",  # no config file: only these flags
        "-v",  # log each allocation with its user name
        "--listening-ip=127.0.0.1", f"--listening-port={server.port}",
        "--relay-ip=127.0.0.1",
        # Both peers of a test call sit on loopback, which coturn refuses by default.
        "--allow-loopback-peers",
        "--use-auth-secret", f"--static-auth-secret={server.secret}", f"--realm={REALM}",
        "--no-cli", "--no-tls", "--no-dtls", "--no-tcp-relay",
        # Files of its own: several test runs may share the machine.
        f"--log-file={server.log_path}", "--simple-log", "--no-stdout-log",
        f"--pidfile={workdir / 'turnserver.pid'}", f"--userdb={workdir / 'turndb'}",
    ]
    stderr = (workdir / "stderr").open("wb")
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=stderr)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers_stun(server.port):
            if process.poll() is not None:
                err = (workdir / "stderr").read_text(errors="replace")
                raise RuntimeError(f"turnserver exited {process.returncode}: {err}\n"
                                   f"{server.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not answer in {timeout_s} s")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)
