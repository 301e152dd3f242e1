"""F5-TTS on a tiny random-weight checkpoint, through the real loading and synthesis code.

The test builds a 2-layer F5-TTS DiT and a 1-layer Vocos vocoder with random weights,
saves them the way the released checkpoints are saved (EMA safetensors, Vocos
config.yaml + pytorch_model.bin), and loads them with `F5Tts` as the server would. It
checks shapes, rates, streaming order, cancellation and the profile cache, not voice
quality. Needs torch and f5-tts (`pip install 'avatar-rtc[f5]'`), skipped without them;
the `gpu` variants run the same on CUDA.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avatar_rtc.backends.base import BackendError, Voice
from avatar_rtc.backends.crossfade import StreamJoiner, to_pcm16, trim_silence
from avatar_rtc.backends.profile_cache import reference_of
from avatar_rtc.backends.registry import build_tts
from avatar_rtc.settings import Settings

LONG_TEXT = " ".join(
    ["The quick brown fox jumps over the lazy dog near the quiet river bank."] * 8
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@dataclass
class TinyF5:
    root: Path
    config: Path
    ckpt: Path
    vocoder: Path
    reference: Path
    reference_text: str


def _build_tiny(root: Path) -> TinyF5:
    torch = pytest.importorskip("torch")
    pytest.importorskip("f5_tts")
    import yaml
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from avatar_rtc.backends import tts_f5

    _, f5_model, _ = tts_f5._import_f5()  # first: it makes torchaudio importable
    from importlib.resources import files

    from vocos import Vocos

    config = OmegaConf.load(str(files("f5_tts").joinpath("configs/F5TTS_v1_Base.yaml")))
    config.model.name = "F5TTS_tiny"
    config.model.arch.update(dim=64, depth=2, heads=2, ff_mult=2, text_dim=32, conv_layers=1)
    config_path = root / "F5TTS_tiny.yaml"
    OmegaConf.save(config, config_path)
    vocab, size = f5_model.utils.get_tokenizer(
        str(files("f5_tts").joinpath("infer/examples/vocab.txt")), "custom")
    torch.manual_seed(0)
    model = f5_model.CFM(
        transformer=f5_model.DiT(**config.model.arch, text_num_embeds=size, mel_dim=100),
        mel_spec_kwargs=dict(n_fft=1024, hop_length=256, win_length=1024, n_mel_channels=100,
                             target_sample_rate=24000, mel_spec_type="vocos"),
        vocab_char_map=vocab,
    )
    ckpt = root / "model_tiny.safetensors"
    # The released checkpoints hold the EMA weights under "ema_model.".
    save_file({f"ema_model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    vocoder = root / "vocos"
    vocoder.mkdir()
    hparams = {
        "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                              "init_args": {"sample_rate": 24000, "n_fft": 1024,
                                            "hop_length": 256, "n_mels": 100,
                                            "padding": "center"}},
        "backbone": {"class_path": "vocos.models.VocosBackbone",
                     "init_args": {"input_channels": 100, "dim": 32, "intermediate_dim": 64,
                                   "num_layers": 1}},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": 32, "n_fft": 1024, "hop_length": 256,
                               "padding": "center"}},
    }
    (vocoder / "config.yaml").write_text(yaml.safe_dump(hparams))
    torch.save(Vocos.from_hparams(str(vocoder / "config.yaml")).state_dict(),
               vocoder / "pytorch_model.bin")
    reference = root / "reference.wav"
    shutil.copyfile(str(files("f5_tts").joinpath(tts_f5.PACKAGED_REFERENCE)), reference)
    return TinyF5(root, config_path, ckpt, vocoder, reference, tts_f5.PACKAGED_REFERENCE_TEXT)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyF5:
    return _build_tiny(tmp_path_factory.mktemp("f5"))


def _device(device: str) -> str:
    if device == "cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA GPU")
    return device


def make_tts(tiny: TinyF5, device: str = "cpu", **kwargs: Any) -> Any:
    from avatar_rtc.backends.tts_f5 import F5Tts

    options: dict[str, Any] = dict(ckpt=tiny.ckpt, vocoder_dir=tiny.vocoder,
                                   model=str(tiny.config), device=device, nfe_step=4)
    options.update(kwargs)
    return F5Tts(**options)


def voice_of(tiny: TinyF5, profile: str = "p1", **kwargs: Any) -> Voice:
    return Voice(backend="f5-tts", name=profile, profile_id=profile,
                 reference_audio=str(tiny.reference), reference_text=tiny.reference_text,
                 **kwargs)


class StepCounter:
    """Counts transformer passes (flow-matching steps) as they happen."""

    def __init__(self, tts: Any) -> None:
        self.count = 0
        self._lock = threading.Lock()
        tts._model.transformer.register_forward_hook(self._hook)

    def _hook(self, *args: Any) -> None:
        with self._lock:
            self.count += 1


@pytest.fixture
def tts(tiny: TinyF5) -> Iterator[Any]:
    backend = make_tts(tiny)
    yield backend
    backend.thread.close()


async def collect(tts: Any, text: str, voice: Voice) -> list[np.ndarray]:
    return [pcm async for pcm in tts.synthesize(text, voice)]


@pytest.mark.parametrize("device", DEVICES)
async def test_loads_the_checkpoint_and_streams_int16_at_24k(tiny: TinyF5, device: str) -> None:
    tts = make_tts(tiny, _device(device))
    try:
        assert tts.sample_rate == 24000
        assert tts.name == f"f5-tts F5TTS_tiny ({device}, 4 steps)"
        pieces = await collect(tts, "Hello there, how are you today?", voice_of(tiny))
        assert pieces and all(p.dtype == np.int16 and p.ndim == 1 for p in pieces)
        seconds = sum(len(p) for p in pieces) / tts.sample_rate
        assert 0.5 < seconds < 20.0
        # The stream starts and ends faded: no step from or to silence.
        assert abs(int(pieces[0][0])) < 200 and abs(int(pieces[-1][-1])) < 200
    finally:
        await tts.aclose()


async def test_long_text_streams_batch_by_batch_in_order(tiny: TinyF5, tts: Any) -> None:
    voice = voice_of(tiny)
    reference = tts.cache.get(reference_of(voice), tts.prepare)
    batches = tts.batches(LONG_TEXT, reference, 1.0)
    assert len(batches) >= 3
    steps = StepCounter(tts)
    pieces: list[np.ndarray] = []
    steps_at_first_piece = -1
    async for pcm in tts.synthesize(LONG_TEXT, voice):
        if not pieces:
            steps_at_first_piece = steps.count
        pieces.append(pcm)
    total_steps = steps.count
    # The first audio left after the first batch, long before the whole text was done.
    assert 0 < steps_at_first_piece <= total_steps // len(batches)
    assert len(pieces) == len(batches) + 1  # one piece per batch, then the faded tail

    # Same seed, same batches generated one by one and joined: the same samples, in order.
    joiner = StreamJoiner(tts.sample_rate, 150.0)
    expected: list[np.ndarray] = []
    for batch in batches:
        wave = tts._generate(batch, reference, 1.0, 4)
        expected.append(joiner.push(trim_silence(wave, tts.sample_rate)))
    expected.append(joiner.finish())
    assert joiner.joins == len(batches) - 1
    np.testing.assert_array_equal(np.concatenate(pieces), to_pcm16(np.concatenate(expected)))


async def test_reference_is_prepared_once_per_profile(tiny: TinyF5, tts: Any,
                                                      tmp_path: Path) -> None:
    clip = tmp_path / "ref.wav"
    shutil.copyfile(tiny.reference, clip)
    voice = replace(voice_of(tiny), reference_audio=str(clip))
    for text in ("One sentence.", "Another one.", "And a third."):
        assert await collect(tts, text, voice)
    assert (tts.cache.misses, tts.cache.hits, len(tts.cache)) == (1, 2, 1)

    await collect(tts, "Someone else.", replace(voice, profile_id="p2"))
    assert (tts.cache.misses, len(tts.cache)) == (2, 2)

    # A new clip uploaded for the profile: prepared again, once.
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await collect(tts, "Fresh clip.", voice)
    await collect(tts, "Still fresh.", voice)
    assert tts.cache.misses == 3


async def test_a_clip_without_text_or_file_is_a_clear_error(tiny: TinyF5, tts: Any) -> None:
    with pytest.raises(BackendError, match="has no reference text"):
        await collect(tts, "Hi.", replace(voice_of(tiny), reference_text=""))
    with pytest.raises(BackendError, match=r"reference clip .*missing\.wav"):
        await collect(tts, "Hi.", replace(voice_of(tiny), reference_audio="/nope/missing.wav"))


@pytest.mark.parametrize("device", DEVICES)
async def test_cancel_stops_between_flow_steps(tiny: TinyF5, device: str) -> None:
    tts = make_tts(tiny, _device(device), nfe_step=64)
    try:
        voice = voice_of(tiny)
        before = np.concatenate(await collect(tts, "Check the text cache.", voice))
        steps = StepCounter(tts)
        started = threading.Event()
        tts._model.transformer.register_forward_pre_hook(lambda *a: started.set())

        async def listen() -> None:
            async for _ in tts.synthesize(LONG_TEXT, voice):
                pass

        task = asyncio.create_task(listen())
        await asyncio.to_thread(started.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await tts.thread.run(lambda: None)  # queued behind the cancelled synthesis
        # 8 sentences x 64 steps would be hundreds of passes; the pass running when the
        # listener left finished, the next one never started.
        assert steps.count <= 2
        # The cancelled pass's cached text is gone: the next sentence is exactly as before.
        after = np.concatenate(await collect(tts, "Check the text cache.", voice))
        np.testing.assert_array_equal(before, after)
    finally:
        await tts.aclose()


async def test_speed_is_a_profile_parameter(tiny: TinyF5, tts: Any) -> None:
    text = "This sentence is long enough to have a measurable duration."
    normal = sum(len(p) for p in await collect(tts, text, voice_of(tiny)))
    fast = sum(len(p) for p in await collect(tts, text, voice_of(tiny, speed=2.0)))
    assert 0.4 < fast / normal < 0.7


async def test_concurrent_requests_take_turns_on_one_model(tiny: TinyF5, tts: Any) -> None:
    voice = voice_of(tiny)
    alone = np.concatenate(await collect(tts, "First caller speaking.", voice))
    results = await asyncio.gather(collect(tts, "First caller speaking.", voice),
                                   collect(tts, "Second caller here.", voice))
    # Serialized on the model's one thread: the shared model gives identical output.
    np.testing.assert_array_equal(np.concatenate(results[0]), alone)
    assert results[1]


def test_missing_weights_are_reported_at_load(tiny: TinyF5, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"f5-tts weights not found: .*nothing.safetensors"
                                           r".*download-models f5-tts"):
        make_tts(tiny, ckpt=tmp_path / "nothing.safetensors")


def _settings(tmp_path: Path, **tts: Any) -> Settings:
    settings = Settings()
    settings.storage.data_dir = str(tmp_path)
    for key, value in tts.items():
        setattr(settings.tts, key, value)
    return settings.validate()


async def test_startup_reports_an_unavailable_backend(tmp_path: Path) -> None:
    """No weights (or no f5-tts at all): reported at load and in /health, and a profile
    that needs it gets the reason, while Piper keeps working."""
    tts, status = build_tts(_settings(tmp_path, backends=["f5-tts"], device="cpu"))
    try:
        assert status["tts/piper"] == "ready"
        reason = status["tts/f5-tts"]
        assert reason.startswith("unavailable: f5-tts ")
        assert "weights not found" in reason
        with pytest.raises(BackendError, match="f5-tts is unavailable"):
            async for _ in tts.synthesize("Hi.", Voice(backend="f5-tts")):
                pass
        pieces = [p async for p in tts.synthesize("Hi.", tts.default_voice())]
        assert pieces and tts.sample_rate == 22050
    finally:
        await tts.aclose()


@pytest.mark.slow
async def test_router_serves_piper_and_f5_profiles(tiny: TinyF5, tmp_path: Path) -> None:
    settings = _settings(tmp_path, backends=["f5-tts"], device="cpu", f5_ckpt=str(tiny.ckpt),
                         f5_vocoder=str(tiny.vocoder), f5_model=str(tiny.config),
                         f5_nfe_step=4)
    tts, status = build_tts(settings)
    try:
        assert status == {"tts/piper": "ready", "tts/f5-tts": "ready"}
        assert tts.sample_rate == 48000  # Piper 22.05 kHz and F5 24 kHz meet at 48 kHz
        started = time.perf_counter()
        for voice in (tts.default_voice(), voice_of(tiny)):
            pieces = [p async for p in tts.synthesize("Hello from a profile.", voice)]
            assert pieces and all(p.dtype == np.int16 for p in pieces)
            assert 0.3 < sum(len(p) for p in pieces) / 48000 < 20
        assert time.perf_counter() - started < 60
    finally:
        await tts.aclose()
