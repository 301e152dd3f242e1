"""The registry of live peer connections and the rules that end them.

A peer is pending from its answer until ICE and DTLS connect, then connected. Only
connected peers count against `max_peers`: an offer whose sender never starts ICE
holds a pending slot, of which there are few (in all and per remote address), and
only for the connect timeout, so a handful of such offers cannot lock callers out.

A peer ends, exactly once, when: it fails; it closes; it stays disconnected past a
grace period; it never connects within the connect timeout; it connects while
`max_peers` others are connected; the call reaches its maximum duration; or nothing
happens for the idle timeout (activity is reported by the owner through `touch`).
Whoever owns the call registers close handlers; they run before the peer connection
itself is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCPeerConnection

log = logging.getLogger(__name__)

CloseHandler = Callable[[str], Awaitable[None]]

_WATCH_INTERVAL_S = 0.25


class RegistryFull(RuntimeError):
    """No room for another call; `retry_after_s` is a hint for the client."""

    def __init__(self, message: str, retry_after_s: int = 10) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class PeerLimits:
    connect_timeout_s: float = 5.0
    disconnect_grace_s: float = 5.0
    max_duration_s: float = 1800.0  # 0: unlimited
    idle_timeout_s: float = 300.0  # 0: unlimited


class Peer:
    def __init__(self, pc: RTCPeerConnection, limits: PeerLimits,
                 remote_addr: str | None = None,
                 on_connected: Callable[[Peer], bool] | None = None) -> None:
        self.id = str(uuid.uuid4())
        self.pc = pc
        self.limits = limits
        self.remote_addr = remote_addr
        # Asked once, when the peer connects: False ends it (no room left).
        self._on_connected = on_connected
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.last_activity = self.created_at
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self._handlers: list[CloseHandler] = []
        self._disconnected_since: float | None = None
        self._watchdog: asyncio.Task[None] | None = None
        pc.on("connectionstatechange", self._on_state)

    def on_close(self, handler: CloseHandler) -> None:
        self._handlers.append(handler)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    @property
    def pending(self) -> bool:
        """Answered (or being answered) but not connected yet, and not closing."""
        return self.connected_at is None and self.close_reason is None

    def _on_state(self) -> None:
        state = self.pc.connectionState
        now = time.monotonic()
        if state == "connected":
            if self.connected_at is None and self._on_connected is not None and (
                    not self._on_connected(self)):
                self._spawn_close("server_full")
                return
            self.connected_at = self.connected_at or now
            self._disconnected_since = None
        elif state == "disconnected":
            self._disconnected_since = self._disconnected_since or now
        elif state in ("failed", "closed"):
            self._spawn_close(state)

    def _spawn_close(self, reason: str) -> None:
        if self.close_reason is None:
            asyncio.get_running_loop().create_task(self.close(reason))

    def start_watchdog(self) -> None:
        self._watchdog = asyncio.create_task(self._watch(), name=f"peer-watchdog-{self.id}")

    def _expired(self, now: float) -> str | None:
        limits = self.limits
        if self.connected_at is None:
            if limits.connect_timeout_s and now - self.created_at > limits.connect_timeout_s:
                return "connect_timeout"
            return None
        if self._disconnected_since is not None and (
            now - self._disconnected_since > limits.disconnect_grace_s
        ):
            return "disconnected"
        if limits.max_duration_s and now - self.connected_at > limits.max_duration_s:
            return "max_duration"
        if limits.idle_timeout_s and now - self.last_activity > limits.idle_timeout_s:
            return "idle_timeout"
        return None

    async def _watch(self) -> None:
        while self.close_reason is None:
            await asyncio.sleep(_WATCH_INTERVAL_S)
            reason = self._expired(time.monotonic())
            if reason is not None:
                self._watchdog = None  # close() must not cancel the task running it
                await self.close(reason)
                return

    async def close(self, reason: str) -> None:
        """Ends the call once: handlers first, then the peer connection."""
        if self.close_reason is not None:
            await self.closed.wait()
            return
        self.close_reason = reason
        log.info("peer %s closing: %s", self.id, reason)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        for handler in self._handlers:
            try:
                await handler(reason)
            except Exception:
                log.exception("close handler of peer %s failed", self.id)
        try:
            await close_connection(self.pc)
        finally:
            self.closed.set()


async def close_connection(pc: RTCPeerConnection) -> None:
    """`pc.close()`, which can fail on a connection that a broken offer left half
    built; then each transport that exists is stopped, so no socket stays open."""
    try:
        await pc.close()
        return
    except Exception:
        log.warning("aiortc failed to close a peer connection; stopping its transports",
                    exc_info=True)
    stops: list[Callable[[], Awaitable[None]]] = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None:
            stops += [dtls.stop, dtls.transport.stop]
    sctp = pc.sctp
    if sctp is not None and sctp.transport is not None:
        stops += [sctp.transport.stop, sctp.transport.transport.stop]
    for stop in stops:
        try:
            await stop()
        except Exception:
            log.debug("stopping a transport failed", exc_info=True)


class PeerRegistry:
    def __init__(
        self, max_peers: int, limits: PeerLimits,
        configuration: RTCConfiguration | Callable[[], RTCConfiguration],
        *, max_pending: int = 0, max_pending_per_address: int = 0,
    ) -> None:
        """``configuration`` may be a function: each peer then gets its own (fresh TURN
        credentials)."""
        self.max_peers = max_peers
        self.max_pending = max_pending  # 0: no limit
        self.max_pending_per_address = max_pending_per_address  # 0: no limit
        self.limits = limits
        self._configuration = configuration
        self._peers: dict[str, Peer] = {}

    def __len__(self) -> int:
        """Every peer: pending, connected and closing."""
        return len(self._peers)

    def connected(self) -> int:
        return sum(1 for p in self._peers.values()
                   if p.connected_at is not None and p.close_reason is None)

    def pending(self, remote_addr: str | None = None) -> int:
        """Pending peers, in all or from one remote address."""
        return sum(1 for p in self._peers.values() if p.pending and (
            remote_addr is None or p.remote_addr == remote_addr))

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    def check(self, remote_addr: str | None = None) -> None:
        """Raises RegistryFull unless a new peer from `remote_addr` would fit now."""
        if self.connected() >= self.max_peers:
            raise RegistryFull(f"server full: {self.max_peers} concurrent calls")
        if self.max_pending and self.pending() >= self.max_pending:
            raise RegistryFull(f"too many calls connecting: {self.max_pending} at once",
                               retry_after_s=max(1, math.ceil(self.limits.connect_timeout_s)))
        if self.max_pending_per_address and remote_addr is not None and (
                self.pending(remote_addr) >= self.max_pending_per_address):
            raise RegistryFull(
                f"too many calls connecting from {remote_addr}: "
                f"{self.max_pending_per_address} at once",
                retry_after_s=max(1, math.ceil(self.limits.connect_timeout_s)))

    def create(self, remote_addr: str | None = None) -> Peer:
        """A new pending peer connection, or RegistryFull when there is no room."""
        self.check(remote_addr)
        configuration = self._configuration
        if callable(configuration):
            configuration = configuration()
        peer = Peer(RTCPeerConnection(configuration=configuration), self.limits,
                    remote_addr, on_connected=self._room_for)
        self._peers[peer.id] = peer

        async def forget(_reason: str) -> None:
            self._peers.pop(peer.id, None)

        peer.on_close(forget)
        peer.start_watchdog()
        return peer

    def _room_for(self, peer: Peer) -> bool:
        # Several pending peers may connect while the last slot is free: the first wins.
        if self.connected() < self.max_peers:
            return True
        log.info("peer %s connected with %d calls live: no room", peer.id, self.max_peers)
        return False

    async def close_all(self, reason: str = "shutdown") -> None:
        await asyncio.gather(*(p.close(reason) for p in self.peers()), return_exceptions=True)
