"""The conversation of one call: endpointing, the turn pipeline, and barge-in.

Audio in (16 kHz) -> VAD -> Endpointer events -> turns. A turn runs
STT -> LLM tokens -> chunker -> TTS -> outbound queue, each stage streaming into the
next. Two kinds of signal, as in pipecat: data (audio, text) flows through the turn
task; control (barge-in, hang-up) acts at once on the outbound queue and cancels the
task, so the agent stops within one frame whatever the stages are doing.

Speculation: when the user pauses, a *tentative* turn starts on the utterance so far;
its audio is held back until the pause is confirmed as the end of the turn (commit).
If the user speaks on, the tentative turn is cancelled.

Listening ahead: while the user speaks, the LLM evaluates the conversation so far and,
as partial transcripts come in, the user's first words; the end of the turn leaves it
only the last words to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from avatar_rtc.backends.base import BackendError, ChatMessage, CutShort, Pcm, Voice
from avatar_rtc.backends.registry import Backends
from avatar_rtc.backends.scheduler import urgent, user_waits
from avatar_rtc.backends.threads import LIVE_CALLS
from avatar_rtc.conversation.chunker import ChunkerConfig, SentenceChunker, ends_sentence
from avatar_rtc.conversation.endpointing import (
    FRAME_MS,
    FRAME_SAMPLES,
    EndOfTurn,
    EndpointConfig,
    Endpointer,
    SpeechFalseStart,
    SpeechPaused,
    SpeechProbable,
    SpeechResumed,
    SpeechStarted,
)
from avatar_rtc.conversation.history import History
from avatar_rtc.conversation.loops import loop_start
from avatar_rtc.conversation.turn import (
    DEFAULT_SAMPLES_PER_CHAR,
    SpokenChunk,
    Turn,
    heard_text,
)
from media.resample import resample_pcm
from media.silence import trim_leading_silence

log = logging.getLogger(__name__)

OUTBOUND_RATE = 48000


def as_said(transcript: str) -> str:
    """Whisper starts some transcripts lower-case, some not, even for the same words:
    the partial and the final one must agree for the LLM's cache to be reused."""
    text = transcript.strip()
    return text[:1].upper() + text[1:]


def heard_before_cut(partial: str) -> str:
    """The words a partial transcript is sure of, as the final one will begin. The
    audio ends inside a word, so the last word goes; Whisper pads a cut-off tail
    with "..." runs, so words stop at the first token without a letter or digit; the
    punctuation after the last kept word is a guess at what comes next, so it goes."""
    tokens = list(itertools.takewhile(lambda t: any(c.isalnum() for c in t), partial.split()))
    kept = " ".join(tokens[:-1]).rstrip(".,;:!?…")
    return as_said(kept)


def _spoken_words(text: str) -> list[str]:
    """The words a chunk says, punctuation and case aside."""
    return [w.strip(".,;:!?\"'()").lower() for w in text.split()]


class Playout(Protocol):
    """The outbound audio queue (media.PacedAudioTrack implements it)."""

    on_chunk_started: Callable[[Any], None] | None

    def enqueue(self, pcm: Pcm, *, label: object = None) -> Any: ...

    def clear(self) -> list[Any]: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    @property
    def is_playing(self) -> bool: ...


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


Emit = Callable[[dict[str, Any]], None]
TurnSink = Callable[[Turn], None]


class Conversation:
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
        self._backends = backends
        self._config = config
        self._playout = playout
        self._voice = voice or backends.tts.default_voice()
        self._emit_fn = emit
        self._on_turn_finished = on_turn_finished
        self._clock = clock
        self._vad = backends.vad.stream()
        self._endpointer = Endpointer(config.endpoint)
        self._history = History(config.max_history_turns)
        self._session = uuid.uuid4().hex  # the LLM keeps this call's KV cache by it
        LIVE_CALLS.enter(self)  # with other calls live, the models step on one thread
        self._pending = np.zeros(0, dtype=np.int16)
        self._tentative: Turn | None = None
        self._active: Turn | None = None  # the committed turn that owns the outbound audio
        self._paused_for_user = False
        self._prefill_task: asyncio.Task[None] | None = None
        self._ahead_task: asyncio.Task[None] | None = None
        self._ahead_every = max(0, round(config.listen_ahead_ms / FRAME_MS))  # frames
        self._ahead_due = 0  # utterance length (frames) of the next partial transcript
        self._ahead_words = ""  # the user's words the last prefill evaluated
        self._turn_count = 0
        self._samples_per_char = DEFAULT_SAMPLES_PER_CHAR
        self._closed = False
        self.state = "listening"
        self.last_activity = clock()
        self.finished_turns: list[Turn] = []
        playout.on_chunk_started = self._on_chunk_started

    # ---- input -------------------------------------------------------------------

    def feed(self, pcm: Pcm) -> None:
        """Takes 16 kHz mono audio from the inbound track, any length."""
        if self._closed:
            return
        pending = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        usable = len(pending) - len(pending) % FRAME_SAMPLES
        # One VAD frame costs ~0.1 ms: cheaper inline than a thread hop.
        for start in range(0, usable, FRAME_SAMPLES):
            frame = pending[start : start + FRAME_SAMPLES]
            probability = self._vad.probability(frame.astype(np.float32) / 32768.0)
            for event in self._endpointer.feed(frame, probability, self._clock()):
                self._on_event(event)
            self._listen_ahead(probability)
        self._pending = pending[usable:].copy()

    def _on_event(self, event: object) -> None:
        if isinstance(event, SpeechProbable):
            # Also between two chunks, or before the first: the next one waits too.
            if self._active is not None:
                self._playout.pause()
                self._paused_for_user = True
        elif isinstance(event, SpeechFalseStart):
            self._resume_after_false_start()
        elif isinstance(event, SpeechStarted):
            self.last_activity = event.at
            self._emit({"type": "vad", "speaking": True})
            if self._active is not None:
                self._interrupt(self._active)
                self._endpointer.hold_turn_open()
            self._paused_for_user = False
            self._start_listening_ahead()
            self._prefill()
        elif isinstance(event, SpeechPaused):
            self._emit({"type": "vad", "speaking": False})
            if self._config.speculative:
                self._tentative = self._start_turn(event.audio, event.speech_end_at)
        elif isinstance(event, SpeechResumed):
            self._emit({"type": "vad", "speaking": True})
            self._discard_tentative()
        elif isinstance(event, EndOfTurn):
            self.last_activity = event.at
            turn = self._tentative
            self._tentative = None
            if turn is None or event.forced:
                self._discard(turn)
                turn = self._start_turn(event.audio, event.speech_end_at)
            self._commit(turn, event.at)

    def _resume_after_false_start(self) -> None:
        if self._paused_for_user:
            self._paused_for_user = False
            self._playout.resume()

    # ---- turn lifecycle ------------------------------------------------------------

    def _prefill(self, user_words: str = "") -> None:
        """While the user speaks, the LLM evaluates the conversation so far (the last
        reply, what was heard of an interrupted one) and the user's words heard so far:
        at the end of the turn only the rest is left to evaluate."""
        self._stop_prefill()
        context = self._history.context(self._config.system_prompt)
        self._prefill_task = asyncio.create_task(self._run_prefill(context, user_words),
                                                 name="llm-prefill")

    async def _run_prefill(self, context: list[ChatMessage], user_words: str) -> None:
        try:
            await self._backends.llm.prefill(context, user_words, session=self._session)
        except Exception as exc:  # only a lost head start: the turn evaluates it all
            log.warning("prefill failed: %s", exc)

    def _stop_prefill(self) -> None:
        """Prefill not started yet is dropped: the turn's STT needs the CPU now."""
        if self._prefill_task is not None:
            self._prefill_task.cancel()
            self._prefill_task = None

    def _start_listening_ahead(self) -> None:
        """A new utterance: its first partial transcript comes listen_ahead_ms on."""
        self._stop_listening_ahead()
        self._ahead_due = self._endpointer.speaking_frames + self._ahead_every
        self._ahead_words = ""

    def _listen_ahead(self, probability: float) -> None:
        """Every listen_ahead_ms of speech, while a word is being said (the user is not
        about to pause), transcribes the utterance so far, one partial at a time."""
        frames = self._endpointer.speaking_frames
        if (not self._ahead_every or not frames or frames < self._ahead_due
                or probability < self._config.endpoint.threshold
                or (self._ahead_task is not None and not self._ahead_task.done())):
            return
        self._ahead_due = frames + self._ahead_every
        self._ahead_task = asyncio.create_task(
            self._run_ahead(self._endpointer.utterance_audio()), name="listen-ahead")

    async def _run_ahead(self, audio: Pcm) -> None:
        try:
            transcript = await self._backends.stt.transcribe(audio, 16000, partial=True)
        except Exception as exc:  # only a lost head start
            log.warning("partial transcript failed: %s", exc)
            return
        words = heard_before_cut(transcript.text)
        if words and words != self._ahead_words:
            self._ahead_words = words
            self._prefill(words)

    def _stop_listening_ahead(self) -> None:
        if self._ahead_task is not None:
            self._ahead_task.cancel()
            self._ahead_task = None

    def _start_turn(self, audio: Pcm, speech_end_at: float) -> Turn:
        self._stop_listening_ahead()
        self._stop_prefill()
        turn = Turn(audio=audio, speech_end_at=speech_end_at)
        turn.task = asyncio.create_task(self._run(turn), name=f"turn-{turn.id}")
        return turn

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
        self._set_state("thinking")
        self._announce(turn)
        if turn.task is not None and turn.task.done():
            self._finish(turn)

    def _announce(self, turn: Turn) -> None:
        """Publishes the user's words once the turn is both committed and transcribed."""
        if turn.announced or not turn.committed.is_set() or "stt_end" not in turn.marks:
            return
        turn.announced = True
        if turn.user_text:
            turn.index = self._turn_count
            self._turn_count += 1
            self._emit({"type": "user_transcript", "turn": turn.index, "text": turn.user_text})

    async def _run(self, turn: Turn) -> None:
        try:
            with user_waits(turn.wait):  # every stage of the turn keeps its place
                await self._pipeline(turn)
            await turn.committed.wait()
            for chunk in turn.chunks:
                for playout in chunk.playouts:
                    await playout.wait()
        except asyncio.CancelledError:
            raise
        except BackendError as exc:
            turn.error = str(exc)
            log.warning("turn %s failed: %s", turn.id, exc)
        except Exception as exc:  # a bug must not leave the agent stuck silent
            turn.error = f"internal error: {type(exc).__name__}"
            log.exception("turn %s crashed", turn.id)
        # A speculative turn that failed reports it only if it gets committed.
        if turn.committed.is_set():
            self._finish(turn)

    async def _pipeline(self, turn: Turn) -> None:
        backends = self._backends
        turn.mark("stt_start", self._clock())
        with urgent():  # the user waits on it: before replies already playing
            transcript = await backends.stt.transcribe(turn.audio, 16000)
        turn.user_text = as_said(transcript.text)
        turn.mark("stt_end", self._clock())
        self._announce(turn)
        if not turn.user_text:
            return
        messages = self._history.messages(self._config.system_prompt, turn.user_text)
        chunker = SentenceChunker(self._config.chunker)
        tokens = backends.llm.stream(messages, turn.gate, session=self._session)
        cut_short = False
        try:
            async for delta in tokens:
                if isinstance(delta, CutShort):
                    cut_short = True
                    continue
                turn.mark("llm_first_token", self._clock())
                if (loop := loop_start(turn.reply_text + delta)) is not None:
                    log.info("turn %s: the reply repeats %r over and over; cut there",
                             turn.id, (turn.reply_text + delta)[loop:loop + 16])
                    cut_short = True  # what follows the last chunk is a fragment
                    if not turn.chunks:  # the chunker may hold part of the repetition
                        chunker = SentenceChunker(self._config.chunker)
                        turn.reply_text, delta = "", (turn.reply_text + delta)[:loop]
                    else:
                        delta = delta[:max(0, loop - len(turn.reply_text))]
                turn.reply_text += delta
                for text in chunker.push(delta):
                    if not await self._say(turn, text):
                        return
                if cut_short:
                    break  # closing the stream stops generation
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]
        for text in chunker.flush(drop_fragment=cut_short):
            if not await self._say(turn, text):
                return
        if cut_short:
            # The history keeps what was said, not the unfinished sentence after it.
            log.info("turn %s: the reply was cut short; its last, unfinished "
                     "sentence is not spoken", turn.id)
            turn.reply_text = turn.chunk_text
        elif chunker.speaker_tag:
            # Nor a speaker tag: a small model that reads its own "L'Alma:" in the
            # history takes it up as a persona and drifts (a bench call answered six
            # questions in a row with "L'Alma: The Moon: A Tale of Two Cities").
            turn.reply_text = turn.chunk_text

    async def _say(self, turn: Turn, text: str) -> bool:
        """Speaks the reply's next chunk; False ends the reply, and the history keeps
        what was said: a small model that repeats a sentence it already said this reply
        goes on looping until max_tokens; a reply that said max_sentences is done."""
        words = _spoken_words(text)
        if len(words) >= 3 and any(_spoken_words(c.text) == words for c in turn.chunks):
            log.info("turn %s: the reply repeats itself; cut at %r", turn.id, text)
            turn.reply_text = turn.chunk_text
            return False
        if turn.chunks:
            await self._wait_for_room(turn)
        await self._speak(turn, text)
        limit = self._config.max_sentences
        if limit and sum(ends_sentence(c.text) for c in turn.chunks) >= limit:
            log.info("turn %s: %d sentences said; the reply ends there", turn.id, limit)
            turn.reply_text = turn.chunk_text
            return False
        return True

    async def _wait_for_room(self, turn: Turn) -> None:
        """Just in time: while more than speak_ahead_s of the reply is left to play, its
        TTS and LLM (through the turn's gate) leave the CPU to calls that wait for their
        first words. A reply cut short by barge-in wastes no work on what was never said."""
        limit = self._config.speak_ahead_s * OUTBOUND_RATE
        if limit <= 0:
            return
        turn.gate.paced = True
        try:
            # Slept for the samples left over the limit: no event would come sooner.
            while (left := turn.unplayed_samples) > limit:  # noqa: ASYNC110
                await asyncio.sleep((left - limit) / OUTBOUND_RATE)
        finally:
            turn.gate.paced = False

    async def _speak(self, turn: Turn, text: str) -> None:
        turn.mark("first_chunk", self._clock())
        chunk = SpokenChunk(text)
        turn.chunks.append(chunk)
        tts = self._backends.tts
        first = len(turn.chunks) == 1
        if first:
            turn.gate.hold()  # the first audio is the critical path: TTS gets the CPU
        audio = tts.synthesize(text, self._voice)
        try:
            with urgent(first):  # the user is waiting for this one: it jumps the TTS queue
                async for pcm in audio:
                    turn.gate.release()
                    if "tts_first_audio" not in turn.marks:
                        pcm = trim_leading_silence(pcm, tts.sample_rate)
                    turn.mark("tts_first_audio", self._clock())
                    pcm48 = resample_pcm(pcm, tts.sample_rate, OUTBOUND_RATE)
                    await turn.committed.wait()  # a tentative turn holds its audio here
                    chunk.playouts.append(self._playout.enqueue(pcm48, label=(turn, chunk)))
                    # What is queued plays on from now: the rest is due when it ends.
                    turn.wait.due = time.monotonic() + turn.unplayed_samples / OUTBOUND_RATE
        finally:
            turn.gate.release()
            await audio.aclose()  # type: ignore[attr-defined]
        chunk.synthesized = True
        if chunk.total_samples and chunk.text:
            # Learn this voice's pace to estimate chunks cut before synthesis ends.
            self._samples_per_char = 0.8 * self._samples_per_char + 0.2 * (
                chunk.total_samples / len(chunk.text)
            )

    def _on_chunk_started(self, playout: Any) -> None:
        label = getattr(playout, "label", None)
        if not isinstance(label, tuple) or len(label) != 2:
            return
        turn, chunk = label
        if not isinstance(turn, Turn) or turn is not self._active:
            return
        if "first_audio_sent" not in turn.marks:
            turn.mark("first_audio_sent", playout.started_at or self._clock())
            self._set_state("speaking")
        if chunk.playouts and chunk.playouts[0] is playout:
            self._emit({"type": "agent_text", "turn": turn.index, "text": chunk.text})
        self.last_activity = self._clock()

    def _interrupt(self, turn: Turn) -> None:
        """Barge-in: silence first (within one frame), then cancel the work."""
        self._playout.clear()  # also ends a pause, so the next reply plays
        self._paused_for_user = False
        turn.interrupted = True
        if turn.task is not None:
            turn.task.cancel()
        self._finish(turn)

    def _finish(self, turn: Turn) -> None:
        if turn.finished:
            return
        turn.finished = True
        turn.ended_at = turn.ended_at or datetime.datetime.now(datetime.UTC)
        if "first_audio_sent" in turn.marks:  # played out, or just cleared
            turn.mark("last_audio_sent", self._clock())
        if self._active is turn:
            self._active = None
        if not turn.interrupted and any(c.sent_samples < c.total_samples for c in turn.chunks):
            # The outbound track stopped under the reply (the peer vanished): its
            # queue was dropped, so the rest was never heard.
            turn.cut_off = True
        cut = turn.interrupted or turn.cut_off or turn.error is not None
        spoken = (heard_text(turn.chunks, self._samples_per_char) if cut
                  else turn.chunk_text)
        turn.spoken_text = spoken
        if turn.error is not None:
            self._emit({"type": "error", "message": turn.error})
        if turn.user_text:
            if turn.index < 0:
                turn.index = self._turn_count
                self._turn_count += 1
            # A reply heard in full goes back in the model's own words (less a speaker
            # tag), so llama.cpp finds it in its KV cache and evaluates only the new
            # user turn.
            self._history.add(turn.user_text, spoken if cut else turn.reply_text.strip(),
                              interrupted=cut)
            self._emit(
                {
                    "type": "turn_end",
                    "turn": turn.index,
                    "interrupted": turn.interrupted,
                    "spoken_text": spoken,
                    "reply_text": turn.reply_text,
                }
            )
            self._emit({"type": "timings", "turn": turn.index, "timings": turn.timings_ms()})
            self.finished_turns.append(turn)
            if self._on_turn_finished is not None:
                self._on_turn_finished(turn)
        if self._active is None and not self._closed:
            self._set_state("listening")

    # ---- outputs -------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._emit({"type": "state", "state": state})

    def _emit(self, event: dict[str, Any]) -> None:
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
        if self._closed:
            return
        self._closed = True
        LIVE_CALLS.leave(self)
        self._backends.llm.release(self._session)
        head_start = [t for t in (self._prefill_task, self._ahead_task) if t is not None]
        self._stop_listening_ahead()
        self._stop_prefill()
        for task in head_start:
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
