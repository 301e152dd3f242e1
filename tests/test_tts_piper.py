"""Piper with the packaged voice: audio per sentence, and a thread pool that leaves
the cores to the next model as soon as a sentence is done."""

from __future__ import annotations

import numpy as np

from avatar_rtc.backends.tts_piper import PACKAGED_VOICE, SPINNING, PiperTts


async def test_the_packaged_voice_speaks_and_its_pool_does_not_spin() -> None:
    tts = PiperTts(PACKAGED_VOICE, voices_dir=None, threads=2)
    try:
        pieces = [pcm async for pcm in tts.synthesize("Hello there. How are you?",
                                                       tts.default_voice())]
        session = tts._load(PACKAGED_VOICE).session  # type: ignore[attr-defined]
        assert session.get_session_options().get_session_config_entry(SPINNING) == "0"
    finally:
        await tts.aclose()
    audio = np.concatenate(pieces)
    assert len(pieces) == 2  # one piece per sentence
    assert 0.8 < audio.size / tts.sample_rate < 4.0
    assert np.abs(audio.astype(np.int32)).max() > 3000
