"""One live call: the peer's tracks and data channel wired to a Conversation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCDataChannel

from avatar_rtc.backends.base import Voice
from avatar_rtc.backends.registry import Backends
from avatar_rtc.conversation import events
from avatar_rtc.conversation.agent import Conversation, ConversationConfig
from avatar_rtc.conversation.turn import Turn
from avatar_rtc.conversation.typed import MessageError, parse_message
from media import InboundAudio, PacedAudioTrack
from media.echo import EchoCanceller
from media.recorder import CallRecorder, RecordingResult
from signaling.peers import Peer

log = logging.getLogger(__name__)

# Events that mean someone is talking: they keep the call from idling out.
_ACTIVITY_EVENTS = (events.Vad, events.AgentText, events.UserTranscript)
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
        on_error: Callable[[Call, str], None] | None = None,
        recorder: CallRecorder | None = None,
        echo: EchoCanceller | None = None,
    ) -> None:
        self.peer = peer
        self.id = peer.id
        self.outbound = PacedAudioTrack()
        self.inbound: InboundAudio | None = None
        self._channel: RTCDataChannel | None = None
        self._early_events: list[str] = []
        self._on_turn_finished = on_turn_finished
        self._on_closed = on_closed
        self._on_error = on_error
        # Both sides recorded from now (t0); finalized when the call closes.
        self.recorder = recorder
        self.recording: RecordingResult | None = None
        self._finishing: asyncio.Future[RecordingResult | None] | None = None
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
        if recorder is not None:
            recorder.start()
            self.outbound.add_tap(recorder.agent_audio)
        # The agent's frames as sent are the canceller's reference; the user's audio
        # reaches the conversation through it (the recorder keeps the raw audio).
        self.echo = echo
        if echo is not None:
            self.outbound.add_tap(echo.far_end)

    def _turn_finished(self, turn: Turn) -> None:
        if self._on_turn_finished is not None:
            self._on_turn_finished(self, turn)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self.inbound is not None:
            return
        echo = self.echo
        sink = (self.conversation.feed if echo is None
                else lambda pcm: self.conversation.feed(echo.process(pcm)))
        inbound = self.inbound = InboundAudio(track, sink)
        recorder = self.recorder
        if recorder is not None:
            inbound.add_tap(lambda pcm: recorder.user_audio(pcm, inbound.captured_at))
        inbound.start()

    @property
    def recording_offset(self) -> Callable[[float, str], int] | None:
        """(monotonic time, "user" | "agent") -> ms into that track of this call's
        recording (CallRecorder.offset_ms); None when not recording."""
        return None if self.recorder is None else self.recorder.offset_ms

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != "events" or self._channel is not None:
            return
        self._channel = channel

        def flush() -> None:
            channel.send(events.Hello(session_id=self.id).to_json())
            channel.send(events.State(state=self.conversation.state).to_json())
            for message in self._early_events:
                channel.send(message)
            self._early_events.clear()

        if channel.readyState == "open":
            flush()
        else:
            channel.on("open", flush)
        channel.on("message", self._on_message)

    def _on_message(self, raw: str | bytes) -> None:
        """A message from the page (typed.py): a typed turn, or an `error` back."""
        try:
            message = parse_message(raw)
        except MessageError as exc:
            log.info("call %s: message refused: %s", self.id, exc)
            # The page's mistake, not the server's: not counted as an error.
            self._deliver(events.Error(message=f"message: {exc}").to_json())
            return
        self.peer.touch()  # typing is activity, as talking is
        self.conversation.type_text(message.text)

    def send_event(self, event: events.Event) -> None:
        if isinstance(event, _ACTIVITY_EVENTS):
            self.peer.touch()
        if isinstance(event, events.Error) and self._on_error is not None:
            self._on_error(self, event.message)
        self._deliver(event.to_json())

    def _deliver(self, message: str) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            # Once the peer is gone, a send would only fail later in aiortc's SCTP task.
            if self.peer.pc.connectionState == "connected":
                channel.send(message)
        elif len(self._early_events) < _MAX_EARLY_EVENTS:
            self._early_events.append(message)

    async def _close(self, reason: str) -> None:
        self.send_event(events.Bye(reason=reason))
        await self.conversation.aclose()
        if self.inbound is not None:
            await self.inbound.stop()
        self.outbound.stop()
        if self.echo is not None:
            log.info("call %s echo canceller: %s", self.id, self.echo.summary())
            self.echo.close()
        finishing = self.finish_recording()  # the files end now, before the callback
        if self._on_closed is not None:
            result = self._on_closed(self, reason)
            if asyncio.iscoroutine(result):
                await result
        await finishing

    def finish_recording(self) -> asyncio.Future[RecordingResult | None]:
        """Finalizes the recording (on a thread) once; every caller gets the same result."""
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish_recording())
        return asyncio.shield(self._finishing)

    async def _finish_recording(self) -> RecordingResult | None:
        if self.recorder is None:
            return None
        try:  # encoder flush and trailer off the loop
            self.recording = await self.recorder.aclose()
        except Exception:
            log.exception("call %s: finalizing the recording failed", self.id)
        return self.recording
