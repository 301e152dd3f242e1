"""The CosyVoice backend's own logic, around a stand-in for CosyVoice's model object.

CosyVoice cannot be installed from a package registry (see tts_cosyvoice.py), so
these unit tests give `CosyVoiceTts` a stand-in with CosyVoice's documented API
(`sample_rate`, `add_zero_shot_spk`, `inference_zero_shot`) and check what is ours:
the reference prepared once per profile, streaming pieces, joins, cancellation, and
clear errors when CosyVoice or its weights are missing.
"""

from __future__ import annotations

import asyncio
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avatar_rtc.backends.base import BackendError, Voice
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.tts_cosyvoice import CosyVoiceTts, import_loader

RATE = 24000


def write_clip(path: Path, seconds: float = 2.0, rate: int = 22050) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.tobytes())
    return path


class StandIn:
    """CosyVoice2's documented surface, producing tones instead of speech."""

    def __init__(self, chunks: int = 3, chunk_s: float = 0.2, delay_s: float = 0.0) -> None:
        self.sample_rate = RATE
        self.speakers: dict[str, tuple[str, str]] = {}
        self.calls: list[dict[str, Any]] = []
        self.chunks = chunks
        self.chunk_s = chunk_s
        self.delay_s = delay_s
        self.produced = 0
        self.closed = threading.Event()

    def add_zero_shot_spk(self, prompt_text: str, prompt_wav: str, zero_shot_spk_id: str) -> bool:
        assert Path(prompt_wav).is_file()
        self.speakers[zero_shot_spk_id] = (prompt_text, prompt_wav)
        return True

    def inference_zero_shot(self, tts_text: str, prompt_text: str, prompt_wav: str,
                            zero_shot_spk_id: str = "", stream: bool = False,
                            speed: float = 1.0, text_frontend: bool = True
                            ) -> Iterator[dict[str, Any]]:
        assert zero_shot_spk_id in self.speakers
        self.calls.append({"text": tts_text, "spk": zero_shot_spk_id, "stream": stream,
                           "speed": speed})
        try:
            for i in range(self.chunks):
                time.sleep(self.delay_s)
                n = int(self.chunk_s * RATE)
                t = np.arange(n) / RATE
                self.produced += 1
                yield {"tts_speech": (0.4 * np.sin(2 * np.pi * (200 + 50 * i) * t))[None]}
        finally:
            self.closed.set()


class CosyVoice3(StandIn):
    pass


def make(tmp_path: Path, model: StandIn, **kwargs: Any) -> CosyVoiceTts:
    (tmp_path / "model").mkdir(exist_ok=True)
    return CosyVoiceTts(tmp_path / "model", cache_dir=tmp_path / "cache",
                        loader=lambda _dir, _fp16: model, **kwargs)


def voice(clip: Path, profile: str = "p1", speed: float = 1.0) -> Voice:
    return Voice(backend="cosyvoice", profile_id=profile, speed=speed,
                 reference_audio=str(clip), reference_text="A reference sentence.")


async def collect(tts: CosyVoiceTts, text: str, v: Voice,
                  priority: Priority | None = None) -> list[np.ndarray]:
    return [pcm async for pcm in tts.synthesize(text, v, priority=priority)]


async def test_reference_registered_once_per_profile(tmp_path: Path) -> None:
    model = StandIn()
    tts = make(tmp_path, model)
    clip = write_clip(tmp_path / "ref.wav")
    try:
        for text in ("One.", "Two.", "Three."):
            assert await collect(tts, text, voice(clip, speed=1.25))
        assert len(model.speakers) == 1 and tts.cache.misses == 1 and tts.cache.hits == 2
        (spk_id, (text, prompt)), = model.speakers.items()
        assert text == "A reference sentence."
        with wave.open(prompt) as w:  # the trimmed clip, mono 16-bit at 24 kHz
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
            assert abs(w.getnframes() / 24000 - 2.0) < 0.2
        assert [c["spk"] for c in model.calls] == [spk_id] * 3
        assert all(c["stream"] is True and c["speed"] == 1.25 for c in model.calls)
        await collect(tts, "Four.", voice(clip, profile="p2"))
        assert len(model.speakers) == 2
    finally:
        await tts.aclose()


async def test_streamed_pieces_pass_through_in_order(tmp_path: Path) -> None:
    model = StandIn(chunks=4)
    tts = make(tmp_path, model, stream=True)
    try:
        pieces = await collect(tts, "Hello.", voice(write_clip(tmp_path / "ref.wav")))
        joined = np.concatenate(pieces)
        chunk = int(0.2 * RATE)
        # CosyVoice blends its own hops: nothing is cut or overlapped, only the ends fade.
        assert len(joined) == 4 * chunk
        t = np.arange(chunk) / RATE
        for i in range(1, 3):
            expected = (0.4 * np.sin(2 * np.pi * (200 + 50 * i) * t) * 32767).astype(np.int16)
            np.testing.assert_allclose(joined[i * chunk:(i + 1) * chunk], expected, atol=1)
        assert abs(int(joined[-1])) < 300
    finally:
        await tts.aclose()


async def test_segments_without_streaming_are_cross_faded(tmp_path: Path) -> None:
    model = StandIn(chunks=3)
    tts = make(tmp_path, model, stream=False, crossfade_ms=50.0)
    try:
        pieces = await collect(tts, "Hello.", voice(write_clip(tmp_path / "ref.wav")))
        joined = np.concatenate(pieces).astype(np.float32) / 32767
        assert model.calls[0]["stream"] is False
        assert len(joined) == 3 * int(0.2 * RATE) - 2 * int(0.05 * RATE)
        assert np.max(np.abs(np.diff(joined))) < 0.05  # no step at the two joins
    finally:
        await tts.aclose()


async def test_cancel_closes_cosyvoice_generator(tmp_path: Path) -> None:
    model = StandIn(chunks=100, chunk_s=0.05, delay_s=0.02)
    tts = make(tmp_path, model)
    try:
        audio = tts.synthesize("A long answer.", voice(write_clip(tmp_path / "ref.wav")))
        async for _ in audio:
            break
        await audio.aclose()  # type: ignore[attr-defined]
        assert await asyncio.to_thread(model.closed.wait, 5)
        assert model.produced < 100
    finally:
        await tts.aclose()


class Logged(StandIn):
    """Notes each piece it makes as (text, index)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[tuple[str, int]] = []

    def inference_zero_shot(self, tts_text: str, *args: Any, **kwargs: Any
                            ) -> Iterator[dict[str, Any]]:
        for i, piece in enumerate(super().inference_zero_shot(tts_text, *args, **kwargs)):
            self.log.append((tts_text, i))
            yield piece


async def test_an_urgent_first_chunk_jumps_the_queue(tmp_path: Path) -> None:
    """The GPU model thread serves the most urgent stream first, as the CPU models' do:
    a reply's first chunk does not wait for another call's long sentence."""
    model = Logged(chunks=40, chunk_s=0.05, delay_s=0.005)
    tts = make(tmp_path, model)
    clip = write_clip(tmp_path / "ref.wav")
    try:
        await collect(tts, "Warm.", voice(clip))  # the profile is prepared
        model.log.clear()
        long = asyncio.create_task(collect(tts, "Long.", voice(clip)))
        while len(model.log) < 3:  # noqa: ASYNC110 - pieces come from the model thread
            await asyncio.sleep(0.001)
        model.chunks = 3
        first = await collect(tts, "First.", voice(clip), priority=Priority(urgent=True))
        assert first
        await long
    finally:
        await tts.aclose()
    start = model.log.index(("First.", 0))
    assert model.log[start:start + 3] == [("First.", i) for i in range(3)], model.log
    assert model.log[-1] == ("Long.", 39), model.log


async def test_cosyvoice3_prompt_gets_its_system_prefix(tmp_path: Path) -> None:
    model = CosyVoice3()
    tts = make(tmp_path, model)
    try:
        await collect(tts, "Hi.", voice(write_clip(tmp_path / "ref.wav")))
        (text, _), = model.speakers.values()
        assert text == "You are a helpful assistant.<|endofprompt|>A reference sentence."
    finally:
        await tts.aclose()


async def test_voice_without_reference_is_a_clear_error(tmp_path: Path) -> None:
    tts = make(tmp_path, StandIn())
    try:
        with pytest.raises(BackendError, match="cosyvoice clones a reference clip"):
            await collect(tts, "Hi.", tts.default_voice())
    finally:
        await tts.aclose()


def test_missing_cosyvoice_or_weights_fail_at_load(tmp_path: Path) -> None:
    try:
        import cosyvoice.cli  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match=r"not on PyPI.*tts\.cosyvoice_repo"):
            import_loader("", "cuda")
    with pytest.raises(BackendError, match="is not a CosyVoice clone"):
        import_loader(str(tmp_path), "cuda")
    with pytest.raises(BackendError, match=r"cosyvoice weights not found.*download-models"):
        CosyVoiceTts(tmp_path / "absent", cache_dir=tmp_path, loader=lambda d, f: StandIn())
