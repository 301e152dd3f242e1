"""Piper with the packaged voice: audio per sentence."""

from __future__ import annotations

import numpy as np

from avatar_rtc.backends.thread_choice import ThreadChoice
from avatar_rtc.backends.tts_piper import PACKAGED_VOICE, PiperTts


async def test_the_packaged_voice_speaks_a_piece_per_sentence() -> None:
    tts = PiperTts(PACKAGED_VOICE, voices_dir=None, threads=2)
    try:
        pieces = [pcm async for pcm in tts.synthesize("Hello there. How are you?",
                                                       tts.default_voice())]
    finally:
        await tts.aclose()
    audio = np.concatenate(pieces)
    assert len(pieces) == 2  # one piece per sentence
    assert 0.8 < audio.size / tts.sample_rate < 4.0
    assert np.abs(audio.astype(np.int32)).max() > 3000


async def test_a_sentence_runs_on_the_session_whose_threads_were_faster_lately() -> None:
    choice = ThreadChoice(2)
    tts = PiperTts(PACKAGED_VOICE, voices_dir=None, threads=2, thread_choice=choice)
    sessions: list[int] = []
    original = tts._load

    def load(name: str, threads: int) -> object:
        voice = original(name, threads)
        sessions.append(voice.session.get_session_options().intra_op_num_threads)  # type: ignore[attr-defined]
        return voice

    tts._load = load  # type: ignore[method-assign]
    try:
        for fast, slow in ((2, 1), (1, 2)):
            for _ in range(ThreadChoice.SAMPLES):
                choice.record(fast, 0.05)
                choice.record(slow, 5.0)
            pieces = [pcm async for pcm in tts.synthesize("Hello there.", tts.default_voice())]
            assert np.abs(np.concatenate(pieces).astype(np.int32)).max() > 3000
    finally:
        await tts.aclose()
    assert sessions == [2, 1]
    assert (choice.cost(1) or 5.0) < 5.0  # the sentence was timed, per second of audio
