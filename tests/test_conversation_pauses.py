"""A pause mid-sentence: the verdict of the end-of-turn model and the words."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import numpy as np

from avatar_rtc.backends.base import Pcm, Transcript
from avatar_rtc.backends.priority import Priority
from avatar_rtc.conversation.endpointing import EndpointConfig
from tests.conversation_helpers import CONFIG, harness
from tests.fakes import FakeStt, silence, tone

DECIDING = replace(CONFIG, endpoint=replace(CONFIG.endpoint, decides=True,
                                            incomplete_end_silence_ms=1500))


@dataclass
class ScriptedStt(FakeStt):
    """Transcripts in order, one per final transcript."""

    texts: list[str] = field(default_factory=list)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, partial: bool = False,
                         priority: Priority | None = None) -> Transcript:
        result = await super().transcribe(pcm, sample_rate, partial=partial,
                                          priority=priority)
        if partial:
            return result
        text = self.texts.pop(0) if self.texts else ""
        return Transcript(text, "en", result.audio_s)


@dataclass
class FixedTurnModel:
    probability_value: float
    name: str = "fixed"
    heard: list[int] = field(default_factory=list)

    async def probability(self, pcm: Pcm, sample_rate: int, *,
                          priority: Priority | None = None) -> float:
        self.heard.append(len(pcm))
        await asyncio.sleep(0.01)
        return self.probability_value

    async def warmup(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_a_pause_after_unfinished_words_waits_for_the_rest() -> None:
    stt = ScriptedStt(texts=["Could you tell me", "Could you tell me how far the moon is?"])
    model = FixedTurnModel(0.98)  # synthetic prosody sounds finished: the words know better
    async with harness(DECIDING, stt=stt, turn=model) as h:
        await h.say(np.concatenate([tone(0.6), silence(1.0), tone(0.6), silence(0.1)]))
        await h.wait_for("turn_end", limit_s=5)
        ends = h.of_type("turn_end")
        transcripts = h.of_type("user_transcript")
    assert [t["text"] for t in transcripts] == ["Could you tell me how far the moon is?"]
    assert len(ends) == 1 and len(model.heard) == 2


async def test_a_finished_question_ends_sooner_than_the_usual_silence() -> None:
    model = FixedTurnModel(0.9)
    stt = ScriptedStt(texts=["What is the capital of France?"])
    async with harness(DECIDING, stt=stt, turn=model) as h:
        await h.say(np.concatenate([tone(0.6), silence(0.6)]))
        await h.wait_for("timings")
        timings = h.of_type("timings")[0]["timings"]
    # Committed once the model and the transcript agreed, before 256 ms of silence.
    assert timings["endpoint_ms"] < CONFIG.endpoint.end_silence_ms - 50, timings


async def test_a_model_sure_the_speaker_goes_on_holds_the_turn() -> None:
    model = FixedTurnModel(0.02)
    stt = ScriptedStt(texts=["I was thinking.", "I was thinking about the sea."])
    async with harness(DECIDING, stt=stt, turn=model) as h:
        await h.say(np.concatenate([tone(0.6), silence(0.9), tone(0.6)]))
        await h.say(silence(1.7))
        await h.wait_for("turn_end", limit_s=5)
        transcripts = [t["text"] for t in h.of_type("user_transcript")]
    assert transcripts == ["I was thinking about the sea."]


async def test_without_a_model_the_words_alone_decide() -> None:
    stt = ScriptedStt(texts=["Tell me a joke."])
    async with harness(DECIDING, stt=stt) as h:
        await h.say(np.concatenate([tone(0.6), silence(0.5)]))
        await h.wait_for("timings")
        timings = h.of_type("timings")[0]["timings"]
    assert timings["endpoint_ms"] < CONFIG.endpoint.end_silence_ms - 50, timings


async def test_without_speculation_or_model_silence_decides_as_before() -> None:
    config = replace(DECIDING, speculative=False)
    async with harness(config, stt=ScriptedStt(texts=["Could you tell me"])) as h:
        await h.say(np.concatenate([tone(0.6), silence(0.6)]))
        await h.wait_for("timings")
        timings = h.of_type("timings")[0]["timings"]
    assert timings["endpoint_ms"] >= CONFIG.endpoint.end_silence_ms - 40, timings


def test_deciding_is_off_by_default() -> None:
    assert EndpointConfig().decides is False
