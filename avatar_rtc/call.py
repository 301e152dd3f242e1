"""One live call: the peer's tracks and data channel wired to a Conversation."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCDataChannel

from avatar_rtc.backends.base import Voice
from avatar_rtc.backends.registry import Backends
from avatar_rtc.conversation.agent import Conversation, ConversationConfig
from avatar_rtc.conversation.turn import Turn
from media import InboundAudio, PacedAudioTrack
from signaling.peers import Peer

log = logging.getLogger(__name__)

# Events that mean someone is talking: they keep the call from idling out.
_ACTIVITY_EVENTS = {"vad", "agent_text", "user_transcript"}
_MAX_EARLY_EVENTS = 64


class Call:
    def __init__(
        self,
        peer: Peer,
        backends: Backends,
        config: ConversationConfig,
        *,
        voice: Voice | None = None,
        on_turn_finished: Callable[[Call, Turn], None] | None = None,
        on_closed: Callable[[Call, str], Any] | None = None,
    ) -> None:
        self.peer = peer
        self.id = peer.id
        self.outbound = PacedAudioTrack()
        self.inbound: InboundAudio | None = None
        self._channel: RTCDataChannel | None = None
        self._early_events: list[str] = []
        self._on_turn_finished = on_turn_finished
        self._on_closed = on_closed
        self.conversation = Conversation(
            backends,
            config,
            self.outbound,
            voice=voice,
            emit=self.send_event,
            on_turn_finished=lambda turn: self._turn_finished(turn),
        )
        peer.pc.on("track", self._on_track)
        peer.pc.on("datachannel", self._on_datachannel)
        peer.on_close(self._close)

    def _turn_finished(self, turn: Turn) -> None:
        if self._on_turn_finished is not None:
            self._on_turn_finished(self, turn)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self.inbound is not None:
            return
        self.inbound = InboundAudio(track, self.conversation.feed)
        self.inbound.start()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != "events" or self._channel is not None:
            return
        self._channel = channel

        def flush() -> None:
            channel.send(json.dumps({"type": "hello", "session_id": self.id}))
            channel.send(json.dumps({"type": "state", "state": self.conversation.state}))
            for message in self._early_events:
                channel.send(message)
            self._early_events.clear()

        if channel.readyState == "open":
            flush()
        else:
            channel.on("open", flush)

    def send_event(self, event: dict[str, Any]) -> None:
        if event.get("type") in _ACTIVITY_EVENTS:
            self.peer.touch()
        message = json.dumps(event, ensure_ascii=False)
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(message)
        elif len(self._early_events) < _MAX_EARLY_EVENTS:
            self._early_events.append(message)

    async def _close(self, reason: str) -> None:
        self.send_event({"type": "bye", "reason": reason})
        await self.conversation.aclose()
        if self.inbound is not None:
            await self.inbound.stop()
        self.outbound.stop()
        if self._on_closed is not None:
            result = self._on_closed(self, reason)
            if asyncio.iscoroutine(result):
                await result
