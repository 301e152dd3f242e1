"""The conversation of one call: endpointing, turns, and barge-in.

Audio in (16 kHz) -> VAD -> Endpointer events -> turns. A turn runs the reply pipeline
(pipeline.py: STT -> LLM tokens -> chunker -> TTS -> outbound queue), each stage
streaming into the next. Two kinds of signal, as in pipecat: data (audio, text) flows
through the turn task; control (barge-in, hang-up) acts at once on the outbound queue
and cancels the task, so the agent stops within one frame whatever the stages are doing.

Speculation: when the user pauses, a *tentative* turn starts on the utterance so far;
its audio is held back until the pause is confirmed as the end of the turn (commit).
If the user speaks on, the tentative turn is cancelled.

Beside it: listening ahead while the user speaks (listen_ahead.py), what was heard of
the reply (playout.py), and the events the page gets (events.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import assert_never

import numpy as np

from avatar_rtc.backends.base import Pcm, Voice
from avatar_rtc.backends.registry import Backends
from avatar_rtc.conversation import events
from avatar_rtc.conversation.chunker import ChunkerConfig
from avatar_rtc.conversation.endpointing import (
    FRAME_SAMPLES,
    EndOfTurn,
    EndpointConfig,
    Endpointer,
    Event,
    SpeechFalseStart,
    SpeechPaused,
    SpeechProbable,
    SpeechResumed,
    SpeechStarted,
)
from avatar_rtc.conversation.events import ConversationState
from avatar_rtc.conversation.history import History
from avatar_rtc.conversation.listen_ahead import ListenAhead
from avatar_rtc.conversation.noise import NoiseConfig
from avatar_rtc.conversation.overlap import (
    OverlapConfig,
    OverlapJudge,
    OverlapVerdict,
    content_words,
)
from avatar_rtc.conversation.pauses import PauseJudge
from avatar_rtc.conversation.pipeline import ReplyPipeline
from avatar_rtc.conversation.playout import Playout, PlayoutTracker, SpokenChunk
from avatar_rtc.conversation.tool_use import ToolsConfig, ToolState
from avatar_rtc.conversation.turn import Turn
from avatar_rtc.conversation.turn_end import TurnEndConfig, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConversationConfig:
    endpoint: EndpointConfig
    system_prompt: str
    max_history_turns: int = 12
    speculative: bool = True
    listen_ahead_ms: float = 640.0  # partial transcripts this often mid-speech; 0: none
    # Chunks after the first are synthesized when less than this much of the reply is
    # left to play (the LLM waits with them); 0: as fast as the models go.
    speak_ahead_s: float = 3.0
    # A reply stops after this many sentences (0: no limit): small models forget the
    # system prompt's "one or two sentences" a few turns in and talk for half a minute.
    max_sentences: int = 3
    chunker: ChunkerConfig = field(default_factory=ChunkerConfig)
    # How a pause's verdict is reached (with endpoint.decides).
    turn_end: TurnEndConfig = field(default_factory=TurnEndConfig)
    # Talk over a reply: heard out (backchannels) or an interruption at once (disabled).
    overlap: OverlapConfig = field(default_factory=OverlapConfig)
    # What is the room (noise, a TV), not the caller.
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    # The tools the model may call (none: it is offered none).
    tools: ToolsConfig | None = None
    # Who speaks a caller's language the call's voice does not (language.py).
    voices_by_language: dict[str, Voice] = field(default_factory=dict)


Emit = Callable[[events.Event], None]
TurnSink = Callable[[Turn], None]


class Conversation:
    """One call's turns: what the user says in, the agent's replies out to `playout`,
    the events for the page to `emit`, each finished turn to `on_turn_finished`."""

    def __init__(
        self,
        backends: Backends,
        config: ConversationConfig,
        playout: Playout,
        *,
        voice: Voice | None = None,
        emit: Emit | None = None,
        on_turn_finished: TurnSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._emit_fn = emit
        self._on_turn_finished = on_turn_finished
        self._clock = clock
        self.voice = voice or backends.tts.default_voice()  # the call speaks with it
        self._vad = backends.vad.stream()
        # The pause's words come from the tentative turn's transcript.
        self._judge = PauseJudge(backends.turn, config.turn_end, wants_text=config.speculative,
                                 on_verdict=self._on_verdict)
        endpoint = config.endpoint
        if endpoint.decides and not self._judge.active:  # no verdict would ever come
            endpoint = replace(endpoint, decides=False)
        self._decides = endpoint.decides
        self._endpointer = Endpointer(endpoint)
        self._overlap = OverlapJudge(backends.stt, config.overlap, self._on_overlap,
                                     agent_words=self._agent_words)
        # What the endpointer said while an overlap was undecided, for its verdict.
        self._overlap_pause: SpeechPaused | None = None
        self._overlap_end: EndOfTurn | None = None
        self._history = History(config.max_history_turns)
        session = uuid.uuid4().hex  # the LLM keeps this call's KV cache by it
        self._playout = PlayoutTracker(playout, self._on_chunk_started)
        self._ahead = ListenAhead(
            backends, self._endpointer, session=session,
            context=lambda: self._history.context(config.system_prompt),
            every_ms=config.listen_ahead_ms, threshold=config.endpoint.threshold,
        )
        self._replies = ReplyPipeline(
            backends, self._playout, self._history, session=session,
            voice=self.voice, system_prompt=config.system_prompt,
            chunker=config.chunker, max_sentences=config.max_sentences,
            speak_ahead_s=config.speak_ahead_s, clock=clock, on_transcribed=self._announce,
            noise=config.noise, tools=config.tools,
            voices_by_language=config.voices_by_language, on_text=self._on_text,
        )
        self._language: tuple[str, str, bool] = ("en", "en", True)  # as the page knows it
        self._pending = np.zeros(0, dtype=np.int16)
        self._tentative: Turn | None = None  # started on a pause, not committed yet
        self._pause = 0  # the endpointer's name of the pause the tentative turn started on
        self._active: Turn | None = None  # the committed turn that owns the outbound audio
        self._turn_count = 0
        self.state = ConversationState.LISTENING
        self.finished_turns: list[Turn] = []

    # ---- input -------------------------------------------------------------------

    def feed(self, pcm: Pcm) -> None:
        """Takes 16 kHz mono audio from the inbound track, any length."""
        if self.state is ConversationState.CLOSED:
            return
        pending = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        usable = len(pending) - len(pending) % FRAME_SAMPLES
        # One VAD frame costs ~0.1 ms: cheaper inline than a thread hop.
        for start in range(0, usable, FRAME_SAMPLES):
            frame = pending[start : start + FRAME_SAMPLES]
            probability = self._vad.probability(frame.astype(np.float32) / 32768.0)
            for event in self._endpointer.feed(frame, probability, self._clock()):
                self._on_event(event)
            if (self._overlap.active and self._endpointer.hearing_speech
                    and probability >= self._config.endpoint.threshold):
                self._overlap.frame(self._endpointer.utterance_audio)
            self._ahead.frame(probability)
        self._pending = pending[usable:].copy()

    def type_text(self, text: str) -> None:
        """A typed message (typed.py checked it): a user turn like a spoken one, that
        takes the floor at once as a barge-in would."""
        if self.state is ConversationState.CLOSED:
            return
        # What the user was saying, if anything, gives way to what they typed.
        self._judge.cancel()
        self._overlap.cancel()
        self._overlap_pause = self._overlap_end = None
        self._discard_tentative()
        self._playout.unduck()
        self._playout.user_spoke()
        self._ahead.stop()
        now = self._clock()
        turn = Turn(audio=np.zeros(0, dtype=np.int16), speech_end_at=now, user_text=text,
                    typed=True)
        turn.task = asyncio.create_task(self._run(turn), name=f"turn-{turn.id}")
        self._commit(turn, now)  # interrupts the reply in progress

    def _on_event(self, event: Event) -> None:
        match event:
            case SpeechProbable():
                # Also between two chunks, or before the first: the next one waits too.
                if self._active is not None:
                    self._playout.pause_for_user()
                    if self._config.overlap.enabled and self._agent_talking():
                        self._overlap.start()  # heard out before it stops the agent
                        # "Wait, ... stop": its comma is not its end.
                        self._endpointer.hold_turn_open()
            case SpeechFalseStart():
                self._overlap.cancel()
                self._playout.resume_after_false_start()
                self._playout.unduck()
            case SpeechStarted():
                self._emit(events.Vad(speaking=True))
                if not self._overlap.active:
                    self._user_takes_the_floor()
            case SpeechPaused():
                self._emit(events.Vad(speaking=False))
                if self._overlap.active:
                    self._overlap_pause = event
                    self._overlap.ended(event.audio)
                    # No end-of-turn verdict: the overlap ends after the usual silence.
                    for ended in self._endpointer.verdict(event.pause, Verdict.UNSURE,
                                                          self._clock()):
                        self._on_event(ended)
                else:
                    self._on_pause(event)
            case SpeechResumed():
                self._emit(events.Vad(speaking=True))
                if self._overlap.active:
                    self._overlap_pause = None
                    self._overlap.resumed()
                else:
                    self._judge.cancel()
                    self._discard_tentative()
            case EndOfTurn():
                if self._overlap.active:
                    self._overlap_end = event
                    self._overlap.finish()
                else:
                    self._on_end(event)
            case _:  # a new endpointer event must be handled here
                assert_never(event)

    def _agent_words(self) -> set[str]:
        """The words of the reply playing now, as heard back in an overlap."""
        turn = self._active
        if turn is None:
            return set()
        return {w for chunk in turn.chunks[-3:] for w in content_words(chunk.text) or []}

    def _agent_talking(self) -> bool:
        """Whether the user hears a reply now (its audio started and goes on)."""
        turn = self._active
        return turn is not None and "first_audio_sent" in turn.marks

    def _user_takes_the_floor(self) -> None:
        if self._active is not None:
            self._interrupt(self._active)
            if self._endpointer.in_speech:
                self._endpointer.hold_turn_open()
        self._playout.user_spoke()
        self._ahead.start()

    def _on_pause(self, event: SpeechPaused) -> None:
        self._pause = event.pause
        if self._config.speculative:
            self._tentative = self._start_turn(event.audio, event.speech_end_at)
        if self._decides:
            self._judge.pause(event.pause, event.audio)

    def _on_end(self, event: EndOfTurn) -> None:
        turn, self._tentative = self._tentative, None
        if turn is None or event.forced:
            self._discard(turn)
            turn = self._start_turn(event.audio, event.speech_end_at)
        self._commit(turn, event.at)

    def _on_overlap(self, verdict: OverlapVerdict, text: str) -> None:
        pause, end = self._overlap_pause, self._overlap_end
        if verdict is OverlapVerdict.GOES_ON:
            if self._active is not None:
                self._playout.resume_ducked(self._config.overlap.duck_db)
            return
        self._overlap_pause = self._overlap_end = None
        self._playout.unduck()
        if verdict is OverlapVerdict.INTERRUPTION:
            log.info("talk over the reply interrupts it: %r", text)
            self._user_takes_the_floor()
            if pause is not None:
                self._on_pause(pause)
            if end is not None:
                self._on_end(end)
            return
        log.info("backchannel over the reply: %r", text)
        self._endpointer.reset()  # not a turn
        self._playout.resume_after_false_start()
        if self._active is not None:
            self._active.backchannels.append(text)
        self._emit(events.Backchannel(text=text))

    def _on_verdict(self, pause: int, verdict: Verdict) -> None:
        for event in self._endpointer.verdict(pause, verdict, self._clock()):
            self._on_event(event)

    # ---- turn lifecycle ------------------------------------------------------------

    def _start_turn(self, audio: Pcm, speech_end_at: float) -> Turn:
        self._ahead.stop()
        turn = Turn(audio=audio, speech_end_at=speech_end_at)
        turn.task = asyncio.create_task(self._run(turn), name=f"turn-{turn.id}")
        return turn

    async def _run(self, turn: Turn) -> None:
        await self._replies.run(turn)
        # A speculative turn that failed reports it only if it gets committed.
        if turn.committed.is_set():
            self._finish(turn)

    def _discard(self, turn: Turn | None) -> None:
        if turn is not None and turn.task is not None:
            turn.task.cancel()

    def _discard_tentative(self) -> None:
        self._discard(self._tentative)
        self._tentative = None

    def _commit(self, turn: Turn, at: float) -> None:
        if self._active is not None:  # never two voices at once
            self._interrupt(self._active)
        turn.mark("committed", at)
        turn.committed.set()
        self._active = turn
        self._set_state(ConversationState.THINKING)
        self._announce(turn)
        if turn.task is not None and turn.task.done():
            self._finish(turn)

    def _announce(self, turn: Turn) -> None:
        """Publishes the user's words once the turn is both committed and transcribed."""
        if turn is self._tentative and "stt_end" in turn.marks:
            self._judge.heard(self._pause, turn.user_text)
        if turn.announced or not turn.committed.is_set() or not turn.transcribed:
            return
        turn.announced = True
        if turn.user_text:
            self._number(turn)
            self._emit(events.UserTranscript(turn=turn.index, text=turn.user_text,
                                             typed=turn.typed))
            self._tell_language(turn)

    def _tell_language(self, turn: Turn) -> None:
        """The page hears of the caller's language when it changes, or no voice speaks it."""
        plan = turn.language
        if plan is None or not plan.heard:
            return
        now = (plan.heard, plan.answer, plan.spoken)
        if now != self._language:
            self._language = now
            self._emit(events.Language(heard=plan.heard, answer=plan.answer,
                                       spoken=plan.spoken, reason=plan.reason))

    def _on_text(self, turn: Turn, chunk: SpokenChunk) -> None:
        """A chunk of a reply no voice reads: shown at once, as it is written."""
        if turn is self._active:
            self._emit(events.AgentText(turn=turn.index, text=chunk.text))

    def _number(self, turn: Turn) -> None:
        if turn.index < 0:
            turn.index = self._turn_count
            self._turn_count += 1

    def _on_chunk_started(self, owner: object, chunk: SpokenChunk, first_piece: bool,
                          started_at: float | None) -> None:
        turn = self._active
        if turn is None or owner is not turn:
            return
        if "first_audio_sent" not in turn.marks:
            turn.mark("first_audio_sent", started_at or self._clock())
            self._set_state(ConversationState.SPEAKING)
        if first_piece:
            self._emit(events.AgentText(turn=turn.index, text=chunk.text))

    def _interrupt(self, turn: Turn) -> None:
        """Barge-in: silence first (within one frame), then cancel the work."""
        self._playout.clear()
        turn.interrupted = True
        if turn.task is not None:
            turn.task.cancel()
        self._finish(turn)

    def _finish(self, turn: Turn) -> None:
        if turn.finished:
            return
        turn.finished = True
        turn.ended_at = turn.ended_at or datetime.datetime.now(datetime.UTC)
        for use in turn.tool_uses:  # its task is cancelled or done: no result comes
            if use.state is ToolState.RUNNING:
                use.state = ToolState.CANCELLED
        if "first_audio_sent" in turn.marks:  # played out, or just cleared
            turn.mark("last_audio_sent", self._clock())
        if self._active is turn:
            self._active = None
        if not turn.interrupted and any(c.sent_samples < c.total_samples for c in turn.chunks):
            # The outbound track stopped under the reply (the peer vanished): its
            # queue was dropped, so the rest was never heard.
            turn.cut_off = True
        cut = turn.interrupted or turn.cut_off or turn.error is not None
        turn.spoken_text = self._playout.heard(turn.chunks, cut=cut)
        if turn.error is not None:
            self._emit(events.Error(message=turn.error))
        if turn.user_text:
            self._number(turn)
            # A reply heard in full goes back in the model's own words (less a speaker
            # tag), so llama.cpp finds it in its KV cache and evaluates only the new
            # user turn.
            self._history.add(turn.user_text,
                              turn.spoken_text if cut else turn.reply_text.strip(),
                              interrupted=cut, tools=tuple(turn.tool_uses))
            self._emit(events.TurnEnd(turn=turn.index, interrupted=turn.interrupted,
                                      spoken_text=turn.spoken_text,
                                      reply_text=turn.reply_text))
            self._emit(events.Timings(turn=turn.index, timings=turn.timings_ms()))
            self.finished_turns.append(turn)
            if self._on_turn_finished is not None:
                self._on_turn_finished(turn)
        if self._active is None and self.state is not ConversationState.CLOSED:
            self._set_state(ConversationState.LISTENING)

    # ---- outputs -------------------------------------------------------------------

    def _set_state(self, state: ConversationState) -> None:
        if state != self.state:
            self.state = state
            self._emit(events.State(state=state))

    def _emit(self, event: events.Event) -> None:
        if self._emit_fn is not None:
            try:
                self._emit_fn(event)
            except Exception:
                log.exception("event sink failed")

    @property
    def history(self) -> History:
        return self._history

    async def aclose(self) -> None:
        """Hang-up: the turn in flight is stored as cut off; every task ends."""
        if self.state is ConversationState.CLOSED:
            return
        self.state = ConversationState.CLOSED  # not sent: the call says "bye"
        self._replies.close()
        await self._ahead.aclose()
        await self._judge.aclose()
        await self._overlap.aclose()
        tentative = self._tentative
        self._discard_tentative()
        active = self._active
        if active is not None:
            self._playout.clear()
            active.cut_off = True
            if active.task is not None:
                active.task.cancel()
            self._finish(active)
        tasks = [t.task for t in (active, tentative) if t is not None and t.task is not None]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
