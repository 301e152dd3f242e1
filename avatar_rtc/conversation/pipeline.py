"""The reply pipeline of one turn: STT -> LLM tokens -> chunker -> TTS -> playout.

Each stage streams into the next; the reply guards end a small model's reply early.

Scheduling: the models are shared by every live call and serve the most urgent work
first. Every request this module makes says how urgent it is (a `Priority` that
carries the turn's `UserWait`), and the pipeline counts its call among the live ones:
the one place where a call asks the model threads for their order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from avatar_rtc.backends.base import (
    BackendError,
    ChatMessage,
    CutShort,
    ToolCall,
    ToolCalls,
    ToolSpec,
    Transcript,
    Voice,
    speaks,
)
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.registry import Backends
from avatar_rtc.backends.tool_text import ToolCallText
from avatar_rtc.conversation import guards
from avatar_rtc.conversation.chunker import ChunkerConfig, SentenceChunker
from avatar_rtc.conversation.endpointing import SAMPLE_RATE
from avatar_rtc.conversation.history import History
from avatar_rtc.conversation.language import (
    answer_instruction,
    can_read,
    is_cjk_text,
    plan_reply,
)
from avatar_rtc.conversation.listen_ahead import as_said
from avatar_rtc.conversation.noise import NoiseConfig, NoiseFilter, Utterance
from avatar_rtc.conversation.playout import OUTBOUND_RATE, PlayoutTracker, SpokenChunk
from avatar_rtc.conversation.tool_use import (
    ToolFailed,
    ToolsConfig,
    ToolState,
    ToolUse,
    error_result,
    results_in_words,
    tool_messages,
)
from avatar_rtc.conversation.turn import Turn
from media.resample import resample_pcm
from media.silence import trim_leading_silence

log = logging.getLogger(__name__)

# Spoken when a stage fails mid-turn; the error event tells the page which one.
APOLOGY = "Sorry, something went wrong on my side. Could you say that again?"


class ReplyPipeline:
    """Runs turns for one call; `run` is the body of a turn's task."""

    def __init__(
        self,
        backends: Backends,
        playout: PlayoutTracker,
        history: History,
        *,
        session: str,
        voice: Voice,
        system_prompt: str,
        chunker: ChunkerConfig,
        max_sentences: int,
        speak_ahead_s: float,
        clock: Callable[[], float],
        on_transcribed: Callable[[Turn], None],
        noise: NoiseConfig | None = None,
        tools: ToolsConfig | None = None,
        voices_by_language: Mapping[str, Voice] | None = None,
        on_text: Callable[[Turn, SpokenChunk], None] | None = None,
    ) -> None:
        """`voices_by_language`: who speaks a caller's language the call's voice does
        not; `on_text`: a chunk of a reply no voice reads, sent as text at once."""
        self._backends = backends
        self._playout = playout
        self._history = history
        self._session = session  # the LLM keeps this call's KV cache by it
        self._voice = voice
        self._system_prompt = system_prompt
        self._chunker = chunker
        self._max_sentences = max_sentences
        self._speak_ahead_s = speak_ahead_s
        self._clock = clock
        self._on_transcribed = on_transcribed
        self._noise = NoiseFilter(noise or NoiseConfig())  # learns this caller's level
        self._tools = tools if tools is not None and tools.runner.specs else None
        self._voices_by_language = dict(voices_by_language or {})
        self._on_text = on_text
        # With other calls live, the models step on one thread.
        backends.live_calls.enter(self)

    def close(self) -> None:
        self._backends.live_calls.leave(self)
        self._backends.llm.release(self._session)

    async def run(self, turn: Turn) -> None:
        """The reply, until its audio played out (or a failure, stored on the turn)."""
        try:
            try:
                await self._reply(turn)
            except BackendError as exc:
                turn.error = str(exc)
                log.warning("turn %s failed: %s", turn.id, exc)
                await self._apologize(turn)
            await turn.committed.wait()
            for chunk in turn.chunks:
                for playout in chunk.playouts:
                    await playout.wait()
        except asyncio.CancelledError:
            raise
        except BackendError as exc:
            turn.error = turn.error or str(exc)
            log.warning("turn %s failed: %s", turn.id, exc)
        except Exception as exc:  # a bug must not leave the agent stuck silent
            turn.error = turn.error or f"internal error: {type(exc).__name__}"
            log.exception("turn %s crashed", turn.id)

    async def _apologize(self, turn: Turn) -> None:
        """A failed stage leaves the caller with a short spoken apology, not silence
        (after whatever part of the reply was already said)."""
        try:
            await self._speak(turn, APOLOGY)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the TTS itself may be what failed
            log.warning("turn %s: the apology could not be spoken: %s", turn.id, exc)

    async def _reply(self, turn: Turn) -> None:
        if not turn.typed:  # a typed turn comes with its words
            await self._transcribe(turn)
        elif is_cjk_text(turn.user_text):  # Whisper names a spoken one's language
            self._plan(turn, "zh")
        if not turn.user_text:
            return
        plan = turn.language
        if plan is not None and not plan.spoken:
            log.info("turn %s: heard %s, %s: the reply is text only", turn.id, plan.heard,
                     plan.reason)
        # Only a reply in another language than the prompt's changes the prompt (and so
        # the LLM's cached prefix).
        instruction = answer_instruction(plan.answer) if plan is not None else ""
        system_prompt = f"{self._system_prompt} {instruction}".strip() if instruction \
            else self._system_prompt
        messages = self._history.messages(system_prompt, turn.user_text)
        rounds = self._tools.max_rounds if self._tools is not None else 0
        offer = self._tools.runner.specs if self._tools is not None else ()
        user_at = len(messages) - 1
        for round_ in range(rounds + 1):
            if round_ == rounds:
                offer = ()  # the last round offers no tools: the model must answer
            if not offer and turn.tool_uses:
                messages = results_in_words(messages, user_at)
            reply = await self._generate(turn, messages, offer)
            if reply is None:
                return  # the reply ended early; the history keeps what was said
            said, calls = reply
            if not calls and offer and turn.tool_uses and not said.strip():
                # Nothing said and no call read (a garbled one): it answers from a note.
                offer = ()
                continue
            if not calls:
                return
            ran = len(turn.tool_uses)
            messages = [*messages, *await self._use_tools(turn, calls, said)]
            if len(turn.tool_uses) == ran:
                # Only calls it had made already: a small model going round in
                # circles. It answers from the results it has.
                log.info("turn %s: the model repeats its tool calls; it must answer",
                         turn.id)
                offer = ()

    async def _generate(self, turn: Turn, messages: list[ChatMessage],
                        tools: Sequence[ToolSpec]) -> tuple[str, tuple[ToolCall, ...]] | None:
        """One answer of the model, spoken as it comes: what it wrote, and the tools it
        called (then it is asked again with their results). None: the reply ended early."""
        chunker = SentenceChunker(self._chunker)
        before = len(turn.reply_text)
        extra = {"tools": tools} if tools else {}  # a model without tools need not take them
        # Offered none in this turn's last round, a model may write a call as text
        # anyway: never read out.
        unasked = ToolCallText() if self._tools is not None and not tools else None
        tokens = self._backends.llm.stream(messages, turn.gate, session=self._session,
                                           priority=Priority(wait=turn.wait), **extra)
        cut_short = False
        calls: tuple[ToolCall, ...] = ()
        try:
            async for delta in tokens:
                if isinstance(delta, CutShort):
                    cut_short = True
                    continue
                if isinstance(delta, ToolCalls):
                    calls = delta.calls
                    continue
                if unasked is not None:
                    delta = unasked.push(delta)
                    if not delta:
                        continue
                turn.mark("llm_first_token", self._clock())
                if (loop := guards.loop_start(turn.reply_text + delta)) is not None:
                    log.info("turn %s: the reply repeats %r over and over; cut there",
                             turn.id, (turn.reply_text + delta)[loop:loop + 16])
                    cut_short = True  # what follows the last chunk is a fragment
                    if not turn.chunks:  # the chunker may hold part of the repetition
                        chunker = SentenceChunker(self._chunker)
                        turn.reply_text, delta = "", (turn.reply_text + delta)[:loop]
                    else:
                        delta = delta[:max(0, loop - len(turn.reply_text))]
                turn.reply_text += delta
                for text in chunker.push(delta):
                    if not await self._say(turn, text):
                        return None
                if cut_short:
                    break  # closing the stream stops generation
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]
        if unasked is not None and not cut_short:
            rest, ignored = unasked.finish()
            if ignored:
                log.info("turn %s: the model called %s when offered no tools; not said",
                         turn.id, ", ".join(c.name for c in ignored))
            turn.reply_text += rest
            for text in chunker.push(rest):
                if not await self._say(turn, text):
                    return None
        for text in chunker.flush(drop_fragment=cut_short):
            if not await self._say(turn, text):
                return None
        if cut_short:
            log.info("turn %s: the reply was cut short; its last, unfinished "
                     "sentence is not spoken", turn.id)
        if guards.keeps_what_was_said(cut_short=cut_short, speaker_tag=chunker.speaker_tag):
            turn.reply_text = turn.chunk_text
        if cut_short:
            return None
        said = turn.reply_text[before:]
        if calls and turn.reply_text and not turn.reply_text[-1].isspace():
            turn.reply_text += " "  # the answer after the calls is a new sentence
        return said, calls

    async def _use_tools(self, turn: Turn, calls: tuple[ToolCall, ...],
                         said: str) -> list[ChatMessage]:
        """Runs the calls in order, each id once, while the filler is said; returns
        the messages that give the model their results."""
        assert self._tools is not None
        filler = None
        if not turn.chunks and self._tools.filler:  # nothing said yet: the user waits
            filler = asyncio.create_task(self._speak(turn, self._tools.filler))
        uses: list[ToolUse] = []
        try:
            for call in calls:
                uses.append(await self._run_tool(turn, call))
        except BaseException:
            if filler is not None:
                filler.cancel()
            raise
        if filler is not None:
            await filler  # queued before the answer, which follows it
        return tool_messages(uses, said)

    async def _run_tool(self, turn: Turn, call: ToolCall) -> ToolUse:
        assert self._tools is not None
        for use in turn.tool_uses:
            # Never run twice: the same id, or the same call again in this turn (a
            # model that forgot its result must not place an order twice).
            if use.finished and (use.call.id == call.id or (
                    use.call.name, use.call.arguments) == (call.name, call.arguments)):
                log.info("turn %s: tool call %s(%s) asked again; its result is reused",
                         turn.id, call.name, call.arguments)
                if use.call.id == call.id:
                    return use
                return ToolUse(call, use.state, use.result)  # answered under its own id
        use = ToolUse(call)
        turn.tool_uses.append(use)
        log.info("turn %s: tool %s(%s)", turn.id, call.name, call.arguments)
        started = self._clock()
        try:
            use.result = await self._tools.runner.run(call)
            use.state = ToolState.DONE
        except ToolFailed as exc:
            use.result, use.state = error_result(str(exc)), ToolState.FAILED
            log.info("turn %s: tool %s failed: %s", turn.id, call.name, exc)
        except asyncio.CancelledError:
            use.state = ToolState.CANCELLED
            raise
        log.info("turn %s: tool %s %s in %.0f ms", turn.id, call.name, use.state,
                 (self._clock() - started) * 1000)
        return use

    async def _transcribe(self, turn: Turn) -> None:
        turn.mark("stt_start", self._clock())
        # The user waits on it: before replies already playing. Every stage of the turn
        # carries turn.wait, so it keeps the turn's place in line whichever model it reaches.
        transcript = await self._backends.stt.transcribe(
            turn.audio, SAMPLE_RATE, priority=Priority(urgent=True, wait=turn.wait))
        turn.user_text = as_said(transcript.text)
        turn.mark("stt_end", self._clock())
        self._judge(turn, transcript)
        # Planned before the words are announced: the page hears of the language with them.
        self._plan(turn, transcript.language)
        self._on_transcribed(turn)

    def _plan(self, turn: Turn, heard: str) -> None:
        """Which voice (if any) answers in the language the caller used."""
        tts = self._backends.tts
        turn.language = plan_reply(heard, self._voice, self._voices_by_language,
                                   lambda v: speaks(tts, v))

    def _judge(self, turn: Turn, transcript: Transcript) -> None:
        """An utterance that is the room (noise, a TV), not the caller, loses its words:
        it gets no reply and no stored turn."""
        decision = self._noise.judge(Utterance.heard(turn.user_text, turn.audio, transcript))
        if decision.accepted:
            return
        turn.rejected = decision.reason
        log.info("turn %s: not the caller (%s): %r %s", turn.id, decision.reason,
                 turn.user_text, decision.figures())
        turn.user_text = ""

    async def _say(self, turn: Turn, text: str) -> bool:
        """Speaks the reply's next chunk; False ends the reply, and the history keeps
        what was said."""
        if guards.repeats_a_chunk(text, turn.chunks):
            log.info("turn %s: the reply repeats itself; cut at %r", turn.id, text)
            turn.reply_text = turn.chunk_text
            return False
        if turn.chunks:
            await self._wait_for_room(turn)
        await self._speak(turn, text)
        if guards.said_enough(turn.chunks, self._max_sentences):
            log.info("turn %s: %d sentences said; the reply ends there",
                     turn.id, self._max_sentences)
            turn.reply_text = turn.chunk_text
            return False
        return True

    async def _wait_for_room(self, turn: Turn) -> None:
        """Just in time: while more than speak_ahead_s of the reply is left to play, its
        TTS and LLM (through the turn's gate) leave the CPU to calls that wait for their
        first words. A reply cut short by barge-in wastes no work on what was never said."""
        limit = self._speak_ahead_s * OUTBOUND_RATE
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
        voice = turn.language.voice if turn.language is not None else self._voice
        if voice is not None and not can_read(text, speaks(tts, voice)):
            # An English voice never reads Chinese: it would spell it out, or mumble.
            log.warning("turn %s: voice %r does not read %r; sent as text only",
                        turn.id, voice.name, text)
            voice = None
        if voice is None:
            await turn.committed.wait()  # a tentative turn holds its text here too
            self._playout.synthesized(chunk)
            if self._on_text is not None:
                self._on_text(turn, chunk)
            return
        first = len(turn.chunks) == 1
        if first:
            turn.gate.hold()  # the first audio is the critical path: TTS gets the CPU
        # The user is waiting for the first chunk: it jumps the TTS queue.
        audio = tts.synthesize(text, voice, priority=Priority(urgent=first, wait=turn.wait))
        try:
            async for pcm in audio:
                turn.gate.release()
                if "tts_first_audio" not in turn.marks:
                    pcm = trim_leading_silence(pcm, tts.sample_rate)
                turn.mark("tts_first_audio", self._clock())
                pcm48 = resample_pcm(pcm, tts.sample_rate, OUTBOUND_RATE)
                await turn.committed.wait()  # a tentative turn holds its audio here
                self._playout.enqueue(turn, chunk, pcm48)
                # What is queued plays on from now: the rest is due when it ends.
                turn.wait.due = time.monotonic() + turn.unplayed_samples / OUTBOUND_RATE
        finally:
            turn.gate.release()
            await audio.aclose()  # type: ignore[attr-defined]
        self._playout.synthesized(chunk)
