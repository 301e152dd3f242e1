"""The room makes no turn: a conversation replies to the caller, not to noise or a TV."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import numpy as np
import pytest

from avatar_rtc.backends.base import Voice
from avatar_rtc.backends.stt_whisper import WhisperStt
from avatar_rtc.backends.vad_silero import SileroVad
from avatar_rtc.conversation.chunker import ChunkerConfig
from avatar_rtc.conversation.history import History
from avatar_rtc.conversation.noise import NoiseConfig
from avatar_rtc.conversation.pipeline import ReplyPipeline
from avatar_rtc.conversation.playout import PlayoutTracker
from avatar_rtc.conversation.turn import Turn
from media import PacedAudioTrack
from tests.conversation_helpers import harness
from tests.fakes import FakeLlm, FakeStt, fake_backends, silence, tone
from tests.room_audio import RATE, at_level, distant, mix, room_noise
from tests.speech import speak

pytestmark = pytest.mark.timeout(60)

QUESTION = "What is the capital of France?"


async def transcribed_turn(stt: FakeStt, audio: np.ndarray,
                           noise: NoiseConfig | None = None) -> tuple[Turn, FakeLlm]:
    """One turn through a call's reply pipeline, until it was transcribed and judged
    (a reply would then wait for a track that nobody plays out)."""
    llm = FakeLlm()
    judged = asyncio.Event()
    pipeline = ReplyPipeline(
        fake_backends(stt=stt, llm=llm), PlayoutTracker(PacedAudioTrack(), lambda *_: None),
        History(4), session="call", voice=Voice(), system_prompt="Be brief.",
        chunker=ChunkerConfig(), max_sentences=3, speak_ahead_s=0.0, clock=time.monotonic,
        on_transcribed=lambda _turn: judged.set(), noise=noise)
    turn = Turn(audio=audio, speech_end_at=time.monotonic())
    turn.committed.set()
    task = asyncio.create_task(pipeline.run(turn))
    try:
        await asyncio.wait_for(judged.wait(), 5)
        await asyncio.sleep(0.05)  # an accepted turn's reply starts
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pipeline.close()
    return turn, llm


async def test_whispers_thank_you_on_noise_loses_its_words_and_keeps_why(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="avatar_rtc.conversation.pipeline")
    stt = FakeStt(text="Thank you.", no_speech_prob=0.3, avg_logprob=-0.4)
    turn, llm = await transcribed_turn(stt, room_noise(1.0, -25.0))
    assert turn.rejected == "hallucination" and turn.user_text == ""
    assert llm.requests == [] and turn.chunks == []  # no reply
    assert "not the caller (hallucination): 'Thank you.' level=-21.5 dBFS" in caplog.text


async def test_the_callers_words_are_kept() -> None:
    turn, llm = await transcribed_turn(FakeStt(text=QUESTION), tone(1.0))
    assert turn.rejected == "" and turn.user_text == QUESTION
    assert len(llm.requests) == 1


async def test_the_pipeline_takes_its_thresholds_from_its_config() -> None:
    quiet = tone(1.0, amp=0.02)  # -37 dBFS
    turn, _ = await transcribed_turn(FakeStt(text=QUESTION), quiet)
    assert turn.rejected == "too_quiet"
    turn, _ = await transcribed_turn(FakeStt(text=QUESTION), quiet,
                                     NoiseConfig(floor_dbfs=-40.0))
    assert turn.user_text == QUESTION


async def test_a_hallucination_makes_no_turn_and_the_question_after_it_does() -> None:
    stt = FakeStt(text="Thanks for watching!")
    async with harness(stt=stt) as h:
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await asyncio.sleep(0.2)
        assert h.turns == [] and h.of_type("user_transcript") == []
        assert h.conversation.state == "listening"
        stt.text = QUESTION
        await h.say(np.concatenate([tone(0.5), silence(0.5)]))
        await h.wait_for("turn_end")
        assert [t.user_text for t in h.turns] == [QUESTION]
        assert h.of_type("user_transcript")[0]["turn"] == 0  # the first turn


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhisperStt]:
    stt = WhisperStt("tiny.en", cache_dir=tmp_path_factory.mktemp("models"))
    yield stt
    asyncio.run(stt.aclose())


@pytest.mark.slow
async def test_a_tv_in_a_noisy_room_makes_no_turn_and_the_caller_does(
        whisper: WhisperStt, caplog: pytest.LogCaptureFixture) -> None:
    """Silero VAD and Whisper as in a call: the VAD hears the TV as speech, the judge
    after Whisper drops it; the caller's question, in the same room, is answered."""
    caplog.set_level(logging.INFO, logger="avatar_rtc.conversation.pipeline")
    tv_line = distant(speak("Coming up next, our special report on housing prices.", RATE,
                            steady=True), -30.0)
    question = at_level(speak(QUESTION, RATE, steady=True), -20.0)
    room = np.concatenate([silence(0.5), tv_line, silence(1.0), question, silence(1.0)])
    heard = mix(room, room_noise(len(room) / RATE, -45.0))
    tv_end = int((0.5 + 0.8) * RATE) + len(tv_line)
    async with harness(vad=SileroVad(), stt=whisper) as h:
        await h.say(heard[:tv_end])
        await asyncio.sleep(1.0)  # the TV's utterance ended and was transcribed
        assert h.turns == [] and h.of_type("user_transcript") == []
        # The VAD took the TV for speech, Whisper wrote its words, the judge dropped them.
        assert h.of_type("vad")
        assert "not the caller (too_quiet): 'Coming up next" in caplog.text, caplog.text
        await h.say(heard[tv_end:])
        await h.wait_for("turn_end", limit_s=20.0)
    assert len(h.turns) == 1 and "capital" in h.turns[0].user_text.lower()
