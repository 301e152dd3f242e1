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
from collections.abc import Callable, Mapping

from avatar_rtc.backends.base import BackendError, CutShort, Transcript, Voice, speaks
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.registry import Backends
from avatar_rtc.conversation import guards
from avatar_rtc.conversation.chunker import ChunkerConfig, SentenceChunker
from avatar_rtc.conversation.endpointing import SAMPLE_RATE
from avatar_rtc.conversation.history import History
from avatar_rtc.conversation.language import answer_instruction, can_read, plan_reply
from avatar_rtc.conversation.listen_ahead import as_said
from avatar_rtc.conversation.noise import NoiseConfig, NoiseFilter, Utterance
from avatar_rtc.conversation.playout import OUTBOUND_RATE, PlayoutTracker, SpokenChunk
from avatar_rtc.conversation.turn import Turn
from media.resample import resample_pcm
from media.silence import trim_leading_silence

log = logging.getLogger(__name__)


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
            await self._reply(turn)
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

    async def _reply(self, turn: Turn) -> None:
        backends = self._backends
        turn.mark("stt_start", self._clock())
        # The user waits on it: before replies already playing. Every stage of the turn
        # carries turn.wait, so it keeps the turn's place in line whichever model it reaches.
        transcript = await backends.stt.transcribe(
            turn.audio, SAMPLE_RATE, priority=Priority(urgent=True, wait=turn.wait))
        turn.user_text = as_said(transcript.text)
        turn.mark("stt_end", self._clock())
        self._judge(turn, transcript)
        tts = backends.tts
        # Planned before the words are announced: the page hears of the language with them.
        plan = turn.language = plan_reply(transcript.language, self._voice,
                                          self._voices_by_language, lambda v: speaks(tts, v))
        self._on_transcribed(turn)
        if not turn.user_text:
            return
        if not plan.spoken:
            log.info("turn %s: heard %s, %s: the reply is text only", turn.id, plan.heard,
                     plan.reason)
        # Only a reply in another language than the prompt's changes the prompt (and so
        # the LLM's cached prefix).
        instruction = answer_instruction(plan.answer)
        system_prompt = f"{self._system_prompt} {instruction}".strip() if instruction \
            else self._system_prompt
        messages = self._history.messages(system_prompt, turn.user_text)
        chunker = SentenceChunker(self._chunker)
        tokens = backends.llm.stream(messages, turn.gate, session=self._session,
                                     priority=Priority(wait=turn.wait))
        cut_short = False
        try:
            async for delta in tokens:
                if isinstance(delta, CutShort):
                    cut_short = True
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
                        return
                if cut_short:
                    break  # closing the stream stops generation
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]
        for text in chunker.flush(drop_fragment=cut_short):
            if not await self._say(turn, text):
                return
        if cut_short:
            log.info("turn %s: the reply was cut short; its last, unfinished "
                     "sentence is not spoken", turn.id)
        if guards.keeps_what_was_said(cut_short=cut_short, speaker_tag=chunker.speaker_tag):
            turn.reply_text = turn.chunk_text

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
