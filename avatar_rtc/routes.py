"""HTTP routes: the call page, SDP negotiation, health."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from avatar_rtc import recordings
from avatar_rtc.admin.app import add_admin
from avatar_rtc.admin.params import canonical_uuid
from avatar_rtc.admin.voices import NotDrivable, data_dir, voice_for_profile
from avatar_rtc.app import STATE, AppState
from avatar_rtc.backends.base import Voice
from avatar_rtc.call import Call
from avatar_rtc.conversation.agent import ConversationConfig
from avatar_rtc.conversation.chunker import ChunkerConfig
from avatar_rtc.conversation.endpointing import EndpointConfig
from avatar_rtc.conversation.turn import Turn
from avatar_rtc.logs import call_id_var
from avatar_rtc.persist import turn_record
from avatar_rtc.settings import Settings, as_dict
from avatar_rtc.storage import CallRecord, utc_now
from signaling.negotiate import answer_offer
from signaling.offer import Offer, OfferError, parse_offer
from signaling.peers import RegistryFull

log = logging.getLogger(__name__)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error the API returns is JSON, including aiohttp's own (413, 405, 404)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return error(exc.status, exc.reason, headers={"Allow": exc.headers["Allow"]}
                     if "Allow" in exc.headers else None)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[STATE].static_dir / "index.html")


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, object] = {
        "ready": state.ready.is_set(),
        "backends": state.backends.describe() if state.backends else {},
        "calls": len(state.registry),
        "max_calls": state.registry.max_peers,
    }
    if state.load_error:
        body["error"] = state.load_error
    return web.json_response(body, status=200 if state.ready.is_set() else 503)


def _conversation_config(state: AppState) -> ConversationConfig:
    return conversation_config(state.settings)


def conversation_config(s: Settings) -> ConversationConfig:
    """The per-call conversation settings (also used by the offline replay)."""
    return ConversationConfig(
        endpoint=EndpointConfig.from_settings(s.vad),
        system_prompt=s.llm.system_prompt,
        max_history_turns=s.llm.max_history_turns,
        speculative=s.vad.speculative,
        listen_ahead_ms=s.vad.listen_ahead_ms,
        speak_ahead_s=s.tts.speak_ahead_s,
        max_sentences=s.llm.max_sentences,
        chunker=ChunkerConfig(
            first_chunk_min_chars=s.tts.first_chunk_min_chars,
            first_chunk_max_chars=s.tts.first_chunk_max_chars,
            clause_min_chars=s.tts.clause_min_chars,
        ),
    )


async def _voice_for(state: AppState, offer: Offer) -> Voice | None:
    """An installed Piper voice name, or a voice profile's UUID."""
    assert state.backends is not None
    if offer.voice is None:
        return None
    tts = state.backends.tts
    if offer.voice in tts.voices():
        default = tts.default_voice()
        return Voice(backend=default.backend, name=offer.voice, speed=default.speed)
    profile_id = canonical_uuid(offer.voice)
    profile = None
    if profile_id is not None and state.store is not None:
        profile = await state.store.get_profile(profile_id)
    if profile is None:
        raise OfferError(f"unknown voice {offer.voice!r}")
    try:
        return voice_for_profile(profile, state.backends, data_dir(state))
    except NotDrivable as exc:
        raise OfferError(str(exc)) from None


async def offer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.load_error:
        return error(503, f"backends failed to load: {state.load_error}")
    if not state.ready.is_set() or state.backends is None:
        return error(503, "warming up: models are loading", {"Retry-After": "5"})
    refusal = state.backends.admission.check(len(state.registry))  # calls, GPU memory
    if refusal is not None:
        return error(503, refusal.reason, {"Retry-After": str(refusal.retry_after_s)})
    try:
        parsed = parse_offer(await request.read())
        voice = await _voice_for(state, parsed)
    except OfferError as exc:
        return error(400, str(exc))
    try:
        peer = state.registry.create()
    except RegistryFull as exc:
        return error(503, str(exc), {"Retry-After": str(exc.retry_after_s)})
    token = call_id_var.set(peer.id)  # tasks created from here carry the call ID in logs
    try:
        try:
            call = Call(
                peer,
                state.backends,
                _conversation_config(state),
                voice=voice,
                on_turn_finished=_turn_finished(state),
                on_closed=_call_closed(state),
                on_error=lambda _call, message: state.metrics.error(message),
                recorder=recordings.new_recorder(state.settings, peer.id),
            )
        except Exception as exc:  # the slot and the peer go back at once, not at timeout
            log.exception("call setup failed")
            await peer.close("error")
            return error(500, f"call setup failed: {type(exc).__name__}: {exc}")
        state.calls[call.id] = call
        state.metrics.call_started()
        if state.store is not None:
            state.spawn(state.store.create_call(_call_record(state, call, request, voice)),
                        f"create-call-{call.id}")
        try:
            sdp = await answer_offer(peer.pc, parsed.sdp, [call.outbound])
        except OfferError as exc:
            await peer.close("bad_offer")
            return error(400, str(exc))
        except Exception as exc:
            log.exception("negotiation failed")
            await peer.close("error")
            return error(500, f"negotiation failed: {type(exc).__name__}")
        log.info("call %s answered (%d/%d calls)", call.id, len(state.registry),
                 state.registry.max_peers)
        return web.json_response({"sdp": sdp, "type": "answer", "session_id": call.id})
    finally:
        call_id_var.reset(token)


def _turn_finished(state: AppState) -> Callable[[Call, Turn], None]:
    def finished(call: Call, turn: Turn) -> None:
        timings = state.metrics.observe_turn(turn)
        _log_turn(call.id, turn, timings)
        if state.store is not None:
            state.spawn(state.store.save_turn(turn_record(call.id, turn, call.recording_offset)),
                        f"save-turn-{turn.id}")

    return finished


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


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def _call_closed(state: AppState) -> Callable[[Call, str], None]:
    def closed(call: Call, reason: str) -> None:
        state.calls.pop(call.id, None)
        log.info("call %s ended: %s", call.id, reason)
        if state.store is not None:
            state.spawn(state.store.end_call(call.id, utc_now(), reason), f"end-call-{call.id}")
            if call.recorder is not None:  # where and how big, once finalized
                state.spawn(recordings.save_recording(state.store, call,
                                                      recordings.data_dir(state.settings)),
                            f"save-recording-{call.id}")

    return closed


def _call_record(state: AppState, call: Call, request: web.Request,
                 voice: Voice | None = None) -> CallRecord:
    # Set from the start, so a crash mid-call still leaves the files referenced.
    user_audio, agent_audio = (recordings.relative_paths(call.id) if call.recorder is not None
                               else (None, None))
    return CallRecord(
        voice_profile_id=voice.profile_id if voice else None,
        id=call.id,
        started_at=utc_now(),
        user_agent=request.headers.get("User-Agent"),
        remote_addr=request.remote,
        settings=as_dict(state.settings),
        user_audio_path=user_audio,
        agent_audio_path=agent_audio,
    )


def setup(app: web.Application, static: Path) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_post("/offer", offer)
    if app[STATE].settings.server.metrics:
        app.router.add_get("/metrics", metrics)
    add_admin(app)
    app.router.add_static("/static/", static, follow_symlinks=False)
