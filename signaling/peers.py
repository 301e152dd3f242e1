"""The registry of live peer connections and the rules that end them.

A peer ends, exactly once, when: it fails; it closes; it stays disconnected past a
grace period; it never connects within the connect timeout; the call reaches its
maximum duration; or nothing happens for the idle timeout (activity is reported by
the owner through `touch`). Whoever owns the call registers close handlers; they run
before the peer connection itself is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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

    def __init__(self, limit: int, retry_after_s: int = 10) -> None:
        super().__init__(f"server full: {limit} concurrent calls")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class PeerLimits:
    connect_timeout_s: float = 15.0
    disconnect_grace_s: float = 5.0
    max_duration_s: float = 1800.0  # 0: unlimited
    idle_timeout_s: float = 300.0  # 0: unlimited


class Peer:
    def __init__(self, pc: RTCPeerConnection, limits: PeerLimits) -> None:
        self.id = str(uuid.uuid4())
        self.pc = pc
        self.limits = limits
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

    def _on_state(self) -> None:
        state = self.pc.connectionState
        now = time.monotonic()
        if state == "connected":
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
            await self.pc.close()
        finally:
            self.closed.set()


class PeerRegistry:
    def __init__(
        self, max_peers: int, limits: PeerLimits,
        configuration: RTCConfiguration | Callable[[], RTCConfiguration],
    ) -> None:
        """``configuration`` may be a function: each peer then gets its own (fresh TURN
        credentials)."""
        self.max_peers = max_peers
        self.limits = limits
        self._configuration = configuration
        self._peers: dict[str, Peer] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    def create(self) -> Peer:
        """A new peer connection, or RegistryFull when every slot is taken."""
        if len(self._peers) >= self.max_peers:
            raise RegistryFull(self.max_peers)
        configuration = self._configuration
        if callable(configuration):
            configuration = configuration()
        peer = Peer(RTCPeerConnection(configuration=configuration), self.limits)
        self._peers[peer.id] = peer

        async def forget(_reason: str) -> None:
            self._peers.pop(peer.id, None)

        peer.on_close(forget)
        peer.start_watchdog()
        return peer

    async def close_all(self, reason: str = "shutdown") -> None:
        await asyncio.gather(*(p.close(reason) for p in self.peers()), return_exceptions=True)
