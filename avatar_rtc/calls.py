"""The call service: a call's start (peer, recorder, stored row), its turns as they
end, and its end. The only code that creates a `Call`; `routes.offer` translates HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from avatar_rtc import recordings
from avatar_rtc.backends.base import Voice
from avatar_rtc.backends.registry import Backends
from avatar_rtc.call import Call
from avatar_rtc.conversation.agent import ConversationConfig
from avatar_rtc.conversation.chunker import ChunkerConfig
from avatar_rtc.conversation.endpointing import EndpointConfig
from avatar_rtc.conversation.language import parse_voice_map
from avatar_rtc.conversation.noise import NoiseConfig
from avatar_rtc.conversation.overlap import OverlapConfig
from avatar_rtc.conversation.tool_use import ToolsConfig
from avatar_rtc.conversation.turn import Turn
from avatar_rtc.conversation.turn_end import TurnEndConfig
from avatar_rtc.errors import AvatarError
from avatar_rtc.logs import call_id_var
from avatar_rtc.persist import turn_record
from avatar_rtc.settings import EchoSettings, Settings, as_dict
from avatar_rtc.state import AppState
from avatar_rtc.storage import CallRecord, utc_now
from avatar_rtc.tools import Toolbox
from avatar_rtc.voices import VoiceError, voice_named
from media.echo import EchoCanceller
from signaling.negotiate import answer_offer
from signaling.offer import Offer, OfferError
from signaling.peers import Peer, RegistryFull

log = logging.getLogger(__name__)

DRAIN_RETRY_S = 10  # a restart (or another replica) should be up by then


class CallError(AvatarError):
    """A call that did not start; the message says why. (A bad offer is OfferError.)"""


class CallRefused(CallError):
    """Not now: the models are loading or failed to load, or the server is full."""

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CallFailed(CallError):
    """The server failed to set up the call: a bug or a broken resource, not the offer."""


@dataclass(frozen=True)
class Answer:
    sdp: str
    call_id: str


def conversation_config(s: Settings) -> ConversationConfig:
    """The per-call conversation settings (also used by the offline replay)."""
    return ConversationConfig(
        endpoint=EndpointConfig.from_settings(
            s.vad, s.turn, decides=s.turn.model != "none" or s.turn.text_cues),
        system_prompt=s.llm.system_prompt,
        max_history_turns=s.llm.max_history_turns,
        speculative=s.vad.speculative,
        listen_ahead_ms=s.vad.listen_ahead_ms,
        speak_ahead_s=s.tts.speak_ahead_s,
        max_sentences=s.llm.max_sentences,
        turn_end=TurnEndConfig(complete_threshold=s.turn.complete_threshold,
                               incomplete_threshold=s.turn.incomplete_threshold,
                               text_cues=s.turn.text_cues),
        noise=NoiseConfig.from_settings(s.noise),
        tools=ToolsConfig(Toolbox(s.llm.tools), filler=s.llm.tool_filler,
                          max_rounds=s.llm.max_tool_rounds) if s.llm.tools else None,
        overlap=OverlapConfig(enabled=s.turn.backchannels, max_ms=s.turn.overlap_max_ms,
                              duck_db=s.turn.duck_db),
        voices_by_language={
            code: Voice(backend=s.tts.backend, name=name, speed=s.tts.speed)
            for code, name in parse_voice_map(s.tts.voices_by_language).items()},
        chunker=ChunkerConfig(
            first_chunk_min_chars=s.tts.first_chunk_min_chars,
            first_chunk_max_chars=s.tts.first_chunk_max_chars,
            clause_min_chars=s.tts.clause_min_chars,
        ),
    )


def echo_canceller(settings: EchoSettings, asked: bool | None) -> EchoCanceller | None:
    """The call's echo canceller: as the offer asked, else as the settings say."""
    if not (settings.enabled if asked is None else asked):
        return None
    return EchoCanceller(gate=settings.gate, max_delay_ms=settings.max_delay_ms)


class CallService:
    """Starts calls, saves their turns as they end, and ends them.

    Live calls are ``state.calls``; rows and recordings go to ``state.store`` through
    ``state.spawn``, so shutdown waits for them.
    """

    def __init__(self, state: AppState) -> None:
        self._state = state

    def admit(self, remote_addr: str | None = None) -> None:
        """Raises CallRefused unless a call may start now (not draining, models, slots,
        GPU memory, room for one more pending offer from `remote_addr`)."""
        if self._state.draining:
            raise CallRefused("the server is shutting down", retry_after_s=DRAIN_RETRY_S)
        backends = self._backends()
        registry = self._state.registry
        refusal = backends.admission.check(registry.connected())
        if refusal is not None:
            raise CallRefused(refusal.reason, refusal.retry_after_s)
        try:
            registry.check(remote_addr)
        except RegistryFull as exc:
            raise CallRefused(str(exc), exc.retry_after_s) from None

    async def start(self, offer: Offer, *, user_agent: str | None = None,
                    remote_addr: str | None = None) -> Answer:
        """Starts the call ``offer`` asks for and answers it. Raises OfferError (the
        offer or its voice is not acceptable), CallRefused or CallFailed."""
        state = self._state
        backends = self._backends()
        voice = await self._voice(offer, backends)
        try:
            peer = state.registry.create(remote_addr)
        except RegistryFull as exc:
            raise CallRefused(str(exc), exc.retry_after_s) from None
        token = call_id_var.set(peer.id)  # tasks created from here carry the call ID in logs
        try:
            call = await self._open(peer, backends, voice, offer.echo_cancellation)
            state.calls[call.id] = call
            state.metrics.call_started()
            if state.store is not None:
                record = self._record(call, voice, user_agent, remote_addr)
                state.spawn(state.store.create_call(record), f"create-call-{call.id}")
            try:
                sdp = await answer_offer(peer.pc, offer.sdp, [call.outbound])
            except OfferError:
                await peer.close("bad_offer")
                raise
            except asyncio.CancelledError:  # shutdown mid-answer: nothing may stay open
                await asyncio.shield(peer.close("error"))
                raise
            except Exception as exc:
                log.exception("negotiation failed")
                await peer.close("error")
                raise CallFailed(f"negotiation failed: {type(exc).__name__}") from exc
            log.info("call %s answered (%d/%d calls, %d pending)", call.id,
                     state.registry.connected(), state.registry.max_peers,
                     state.registry.pending())
            return Answer(sdp, call.id)
        finally:
            call_id_var.reset(token)

    def _backends(self) -> Backends:
        state = self._state
        if state.load_error:
            raise CallRefused(f"backends failed to load: {state.load_error}")
        if not state.ready.is_set() or state.backends is None:
            raise CallRefused("warming up: models are loading", retry_after_s=5)
        return state.backends

    async def _voice(self, offer: Offer, backends: Backends) -> Voice | None:
        if offer.voice is None:
            return None
        state = self._state
        try:
            return await voice_named(offer.voice, backends, state.store,
                                     state.settings.storage.root)
        except VoiceError as exc:  # the offer asked for it: a bad offer
            raise OfferError(str(exc)) from None

    async def _open(self, peer: Peer, backends: Backends, voice: Voice | None,
                    echo_cancellation: bool | None) -> Call:
        settings = self._state.settings
        try:
            return Call(
                peer,
                backends,
                conversation_config(settings),
                voice=voice,
                on_turn_finished=self._turn_finished,
                on_closed=self._closed,
                on_error=lambda _call, message: self._state.metrics.error(message),
                recorder=recordings.new_recorder(settings, peer.id),
                echo=echo_canceller(settings.echo, echo_cancellation),
            )
        except Exception as exc:  # the slot and the peer go back at once, not at timeout
            log.exception("call setup failed")
            await peer.close("error")
            raise CallFailed(f"call setup failed: {type(exc).__name__}: {exc}") from exc

    def _record(self, call: Call, voice: Voice | None, user_agent: str | None,
                remote_addr: str | None) -> CallRecord:
        # Set from the start, so a crash mid-call still leaves the files referenced.
        user_audio, agent_audio = (recordings.relative_paths(call.id)
                                   if call.recorder is not None else (None, None))
        return CallRecord(
            voice_profile_id=voice.profile_id if voice else None,
            id=call.id,
            started_at=utc_now(),
            user_agent=user_agent,
            remote_addr=remote_addr,
            settings=as_dict(self._state.settings),
            user_audio_path=user_audio,
            agent_audio_path=agent_audio,
        )

    def _turn_finished(self, call: Call, turn: Turn) -> None:
        state = self._state
        timings = state.metrics.observe_turn(turn)
        _log_turn(call.id, turn, timings)
        if state.store is not None:
            state.spawn(state.store.save_turn(turn_record(call.id, turn, call.recording_offset)),
                        f"save-turn-{turn.id}")

    def _closed(self, call: Call, reason: str) -> None:
        state = self._state
        state.calls.pop(call.id, None)
        log.info("call %s ended: %s", call.id, reason)
        if state.store is not None:
            state.spawn(state.store.end_call(call.id, utc_now(), reason), f"end-call-{call.id}")
            if call.recorder is not None:  # where and how big, once finalized
                state.spawn(recordings.save_recording(state.store, call,
                                                      state.settings.storage.root),
                            f"save-recording-{call.id}")


CALLS = web.AppKey("calls", CallService)


def _log_turn(call_id: str, turn: Turn, timings: dict[str, float]) -> None:
    """One line per turn; with log.json its fields are JSON keys too."""
    stages = " ".join(f"{k.removesuffix('_ms')}={v:.0f}" for k, v in timings.items())
    fields = {
        "event": "turn", "turn": turn.index, "user_text": turn.user_text,
        "spoken_text": turn.spoken_text, "reply_text": turn.reply_text,
        "interrupted": turn.interrupted, "cut_off": turn.cut_off, "error": turn.error,
        "timings_ms": timings,
    }
    token = call_id_var.set(call_id)  # the turn may end outside the call's context
    try:
        log.info("turn %d: v2v=%s ms [%s] interrupted=%s user=%r agent=%r",
                 turn.index, f"{timings['first_audio_sent_ms']:.0f}"
                 if "first_audio_sent_ms" in timings else "-", stages,
                 turn.interrupted, turn.user_text, turn.spoken_text,
                 extra={"fields": fields})
    finally:
        call_id_var.reset(token)

