"""CosyVoice2 on a tiny random-weight model, through CosyVoice's own classes.

`tools/random_cosyvoice.py` builds a CosyVoice2 model folder at test time (the YAML,
a 2-layer Qwen2 LLM, a 1-block flow, a narrow HiFT; the speaker encoder and the speech
tokenizer are small ONNX stand-ins of the downloaded ones), and `CosyVoiceTts` loads
it as the server would: CosyVoice's frontend, its CosyVoice2Model and its LLM thread.
The tests check rates, streaming, cancellation (CosyVoice's LLM thread stops), the
profile cache and the shared model thread, not voice quality. They need the GPU
environment (`tools/setup --gpu`, run by `tools/test-gpu`) and are skipped without it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avatar_rtc.backends.base import BackendError, Voice
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.registry import build_tts
from avatar_rtc.backends.torchaudio_compat import without_mismatched_extension
from avatar_rtc.backends.tts_cosyvoice import CosyVoiceTts
from avatar_rtc.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

RATE = 24000
SAMPLES_PER_TOKEN = 960  # 2 mel frames of 480 samples at 24 kHz: 25 tokens a second
LONG_TEXT = "A long answer that goes on and on. " * 6
TOKENS_PER_CHAR = 3.0


def _needs_cosyvoice() -> None:
    without_mismatched_extension()  # before cosyvoice imports torchaudio
    pytest.importorskip("torch", reason="torch is not installed (tools/setup --gpu)")
    pytest.importorskip("cosyvoice.cli.model",
                        reason="cosyvoice is not installed (tools/setup --gpu)")
    pytest.importorskip("onnx", reason="onnx builds the stand-ins (tools/setup --gpu)")


def write_clip(path: Path, seconds: float = 2.0, rate: int = 22050) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((audio * 32767).astype(np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _needs_cosyvoice()
    from random_cosyvoice import build_cosyvoice2

    return build_cosyvoice2(tmp_path_factory.mktemp("cosyvoice"), "tiny")


@pytest.fixture
def tts(model_dir: Path) -> Iterator[CosyVoiceTts]:
    backend = CosyVoiceTts(model_dir, device="cpu", fp16=False)
    # Random weights never write the end token: about the real model's length instead.
    backend._engine.tokens_per_char = TOKENS_PER_CHAR
    yield backend
    backend.thread.close()


def voice(clip: Path, profile: str = "p1", speed: float = 1.0) -> Voice:
    return Voice(backend="cosyvoice", profile_id=profile, speed=speed,
                 reference_audio=str(clip), reference_text="A reference sentence.")


class TokenCounter:
    """Counts the speech tokens CosyVoice's LLM writes (its decoder's passes)."""

    def __init__(self, tts: CosyVoiceTts) -> None:
        self.count = 0
        self.threads: set[str] = set()
        llm = tts._engine.model.llm.module
        llm.llm_decoder.register_forward_hook(self._hook)

    def _hook(self, *args: Any) -> None:
        self.count += 1
        self.threads.add(threading.current_thread().name)


async def collect(tts: CosyVoiceTts, text: str, v: Voice,
                  priority: Priority | None = None) -> list[np.ndarray]:
    return [pcm async for pcm in tts.synthesize(text, v, priority=priority)]


async def test_streams_int16_at_24k_hop_by_hop(tts: CosyVoiceTts, tmp_path: Path) -> None:
    assert tts.sample_rate == RATE
    assert tts.name == "cosyvoice CosyVoice2-random-tiny (cpu)"
    tokens = TokenCounter(tts)
    clip = voice(write_clip(tmp_path / "ref.wav"))
    await collect(tts, "Hi.", clip)  # the profile is prepared
    tokens.count = 0
    pieces: list[np.ndarray] = []
    tokens_at_first = -1
    async for pcm in tts.synthesize("Hello there, how are you?", clip):
        if not pieces:
            tokens_at_first = tokens.count
        pieces.append(pcm)
    assert all(p.dtype == np.int16 and p.ndim == 1 for p in pieces)
    # The first hop needed 25 tokens, the prompt's padding and 3 of look-ahead, written
    # by the LLM on a thread of its own; then the audio came hop by hop: a middle hop
    # is 25 tokens, one second (HiFT's 8-frame cache carried over from the hop before).
    assert 28 <= tokens_at_first <= tokens.count, (tokens_at_first, tokens.count)
    lengths = [len(p) for p in pieces]
    assert len(pieces) >= 3 and 25 * SAMPLES_PER_TOKEN in lengths[1:], lengths
    assert tokens.threads and threading.current_thread().name not in tokens.threads
    samples = sum(len(p) for p in pieces)
    assert abs(samples - tokens.count * SAMPLES_PER_TOKEN) <= 4 * SAMPLES_PER_TOKEN
    # The stream starts and ends faded: no step from or to silence.
    assert abs(int(pieces[0][0])) < 300 and abs(int(pieces[-1][-1])) < 300


async def test_cancel_stops_cosyvoice_llm_thread(tts: CosyVoiceTts, tmp_path: Path) -> None:
    tokens = TokenCounter(tts)
    clip = voice(write_clip(tmp_path / "ref.wav"))
    await collect(tts, "Hi.", clip)
    before = set(threading.enumerate())
    tokens.count = 0
    tts._engine.tokens_per_char = None  # up to 20 tokens a text token: minutes on a CPU
    audio = tts.synthesize(LONG_TEXT, clip)
    async for _ in audio:
        break
    await audio.aclose()  # type: ignore[attr-defined]
    await tts.thread.run(lambda: None)  # the model thread closed the stream
    model = tts._engine.model
    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - before and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert not set(threading.enumerate()) - before, "CosyVoice's LLM thread still runs"
    stopped_at = tokens.count
    await asyncio.sleep(0.3)
    assert tokens.count == stopped_at
    # LONG_TEXT allows 4200 tokens (20 a text token); the LLM stopped after a hop.
    assert stopped_at < 1000, stopped_at
    assert model.tts_speech_token_dict == {} and model.llm_end_dict == {}
    assert model.hift_cache_dict == {} and model.pending == {}
    tts._engine.tokens_per_char = TOKENS_PER_CHAR
    # The model is not left in a bad state: the next sentence streams.
    assert await collect(tts, "Still here.", clip)


async def test_reference_prepared_once_per_profile(tts: CosyVoiceTts, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "ref.wav")
    prepared: list[str] = []
    prepare = tts.prepare

    def counting(reference: Any) -> Any:
        prepared.append(reference.text)
        return prepare(reference)

    tts.prepare = counting  # type: ignore[method-assign]
    for text in ("One.", "Two.", "Three."):
        assert await collect(tts, text, voice(clip))
    assert prepared == ["A reference sentence."]
    assert (tts.cache.misses, tts.cache.hits, len(tts.cache)) == (1, 2, 1)
    await collect(tts, "Four.", voice(clip, profile="p2"))
    assert (tts.cache.misses, len(tts.cache)) == (2, 2)
    first, second = (entry.inputs for entry in tts.cache._items.values())
    # CosyVoice's prompt: 25 speech tokens a second, two mel frames per token.
    tokens = first["flow_prompt_speech_token"]
    assert 40 <= tokens.shape[1] <= 50
    assert first["prompt_speech_feat"].shape[1] == 2 * tokens.shape[1]
    assert first["llm_embedding"].shape == (1, 192)
    assert second is not first


async def test_speed_synthesizes_the_sentence_whole(tts: CosyVoiceTts, tmp_path: Path) -> None:
    pieces = await collect(tts, "Hello there.", voice(write_clip(tmp_path / "ref.wav"),
                                                      speed=1.5))
    # One sentence, not hops (the cross-fade's held tail comes after it), its mel
    # stretched to 1/1.5 of the tokens' length.
    assert len(pieces) <= 2
    tokens = round(len("Hello there.") * TOKENS_PER_CHAR)
    assert abs(sum(len(p) for p in pieces) - tokens * SAMPLES_PER_TOKEN / 1.5) <= 960


async def test_short_or_missing_reference_is_a_clear_error(tts: CosyVoiceTts,
                                                           tmp_path: Path) -> None:
    short = write_clip(tmp_path / "short.wav", seconds=0.3)
    with pytest.raises(BackendError, match=r"under 0\.5 s of speech"):
        await collect(tts, "Hi.", voice(short))
    with pytest.raises(BackendError, match="cosyvoice clones a reference clip"):
        await collect(tts, "Hi.", tts.default_voice())
    with pytest.raises(BackendError, match="has no reference text"):
        await collect(tts, "Hi.", replace(voice(short), reference_text=""))


def test_missing_weights_or_package_fail_at_load(tmp_path: Path) -> None:
    """Runs everywhere: without cosyvoice installed, the install hint; with it, the
    missing weights."""
    with pytest.raises(BackendError, match=r"cosyvoice weights not found.*download-models"):
        CosyVoiceTts(tmp_path / "absent", device="cpu")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "cosyvoice2.yaml").write_text("sample_rate: 24000\n")
    try:
        import cosyvoice.cli.model  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match=r"cosyvoice is not installed.*setup --gpu"):
            CosyVoiceTts(tmp_path / "model", device="cpu")
    else:
        with pytest.raises(BackendError, match=r"cannot load cosyvoice from .*model"):
            CosyVoiceTts(tmp_path / "model", device="cpu", fp16=False)


def _settings(tmp_path: Path, **tts: Any) -> Settings:
    settings = Settings()
    settings.storage.data_dir = str(tmp_path)
    for key, value in tts.items():
        setattr(settings.tts, key, value)
    return settings.validate()


@pytest.mark.slow
async def test_router_shares_the_cpu_scheduler(model_dir: Path, tmp_path: Path) -> None:
    """Loaded as the server loads it: Piper and CosyVoice behind the router, CosyVoice
    on the device's shared model thread, which takes CPU turns with the local models;
    a reply's first (urgent) audio goes before another call's long sentence."""
    from avatar_rtc.backends.cpu_turns import CpuTurns
    from avatar_rtc.backends.factories import Shared
    from avatar_rtc.backends.model_thread import Policy

    settings = _settings(tmp_path, backends=["cosyvoice"], device="cpu",
                         cosyvoice_model=str(model_dir), cosyvoice_fp16=False)
    shared = Shared(cpu=CpuTurns())
    tts, status = build_tts(settings, shared)
    try:
        assert status == {"tts/piper": "ready", "tts/cosyvoice": "ready"}
        cosy = tts.backend_for(Voice(backend="cosyvoice"))  # type: ignore[attr-defined]
        thread = shared.device_thread("cpu")
        assert cosy.thread is thread and thread.policy is Policy.URGENT_FIRST
        assert thread._cpu is shared.cpu
        cosy._engine.tokens_per_char = TOKENS_PER_CHAR
        clip = voice(write_clip(tmp_path / "ref.wav"))
        assert await collect(tts, "Hi.", clip)  # prepared
        order: list[str] = []

        async def listen(text: str, name: str, priority: Priority | None = None) -> None:
            async for _ in tts.synthesize(text, clip, priority=priority):
                order.append(name)

        long = asyncio.create_task(listen(LONG_TEXT, "long"))
        while not order:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await listen("Hello there, how are you?", "first", Priority(urgent=True))
        long.cancel()
        first = [i for i, name in enumerate(order) if name == "first"]
        # Once the urgent stream came, the long one got no turn until it ended.
        assert all(name == "first" for name in order[first[0]:first[-1] + 1]), order
        assert sum(len(p) for p in await collect(tts, "Hi.", tts.default_voice())) > 0
    finally:
        await tts.aclose()


@pytest.mark.gpu
async def test_streams_and_cancels_on_cuda(model_dir: Path, tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    tts = CosyVoiceTts(model_dir, device="cuda", fp16=True)
    try:
        assert tts.name == "cosyvoice CosyVoice2-random-tiny (cuda, fp16)"
        tts._engine.tokens_per_char = TOKENS_PER_CHAR
        clip = voice(write_clip(tmp_path / "ref.wav"))
        pieces = await collect(tts, "Hello there, how are you?", clip)
        assert len(pieces) >= 3 and all(p.dtype == np.int16 for p in pieces)
        tts._engine.tokens_per_char = None
        audio = tts.synthesize(LONG_TEXT, clip)
        async for _ in audio:
            break
        await audio.aclose()  # type: ignore[attr-defined]
        await tts.thread.run(lambda: None)
        model = tts._engine.model
        assert model.tts_speech_token_dict == {} and model.llm_end_dict == {}
    finally:
        await tts.aclose()
