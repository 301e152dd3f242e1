"""F5-TTS: zero-shot voice cloning by flow matching, the fast cloning backend.

A voice profile's reference clip and its text condition every sentence. The clip is
decoded, trimmed, loudness-normalized and turned into a mel spectrogram once per
profile (`ProfileCache`), not per sentence. F5-TTS is not autoregressive: it generates
a whole text batch at once, so a sentence streams out batch by batch, each join
cross-faded. Cancelling stops between two flow-matching steps.

The weights load from local files only (`tools/download-models f5-tts` fetches them):
a checkpoint, a Vocos vocoder folder, and a model config shipped with f5-tts (or a
.yaml path). torch and f5_tts are imported lazily: the default install has neither.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from avatar_rtc.backends.base import BackendError, Pcm, Voice, backend_errors
from avatar_rtc.backends.crossfade import Audio, StreamJoiner, to_pcm16, trim_silence
from avatar_rtc.backends.model_thread import ModelThread
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.profile_cache import (
    ProfileCache,
    Reference,
    clip_at_pause,
    read_audio,
    reference_of,
)
from avatar_rtc.backends.torchaudio_compat import without_mismatched_extension

log = logging.getLogger(__name__)

BACKEND = "f5-tts"
INSTALL_HINT = "pip install 'avatar-rtc[f5]'"
TARGET_RMS = 0.1  # F5-TTS was trained on references at this loudness
MAX_REFERENCE_S = 12.0  # longer references make every sentence slower
# The reference clip that ships with f5-tts: the voice of calls without a profile.
PACKAGED_REFERENCE = "infer/examples/basic/basic_ref_en.wav"
PACKAGED_REFERENCE_TEXT = "Some call me nature, others call me mother nature."


class _Cancelled(Exception):
    """Raised inside the model between two steps when the listener has gone."""


@dataclass(frozen=True)
class PreparedReference:
    mel: Any  # (1, frames, n_mels) tensor on the model's device
    frames: int  # reference length in hops, the part cut off the generated mel
    rms: float  # the clip's own loudness, restored on the output
    text: str  # the reference text, ending the way F5-TTS expects
    seconds: float


def _import_f5() -> tuple[Any, Any, Any]:
    without_mismatched_extension()  # f5-tts and Vocos import torchaudio
    try:
        with warnings.catch_warnings():
            # pydub (imported by f5-tts) looks for ffmpeg; clips are decoded with PyAV.
            warnings.filterwarnings("ignore", message="Couldn't find ffmpeg")
            import torch
            from f5_tts import model as f5_model
            from f5_tts.infer import utils_infer
    except ImportError as exc:
        raise BackendError(
            "tts", f"f5-tts is not installed ({exc.name} is missing): {INSTALL_HINT}"
        ) from None
    return torch, f5_model, utils_infer


def _model_config(model: str) -> Any:
    from omegaconf import OmegaConf

    path = Path(model)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(str(files("f5_tts").joinpath(f"configs/{model}.yaml")))
    if not path.is_file():
        raise BackendError("tts", f"f5-tts model config not found: {model}")
    return OmegaConf.load(str(path))


def packaged_voice(speed: float = 1.0) -> Voice:
    """The English reference clip shipped inside the f5-tts package."""
    _import_f5()
    path = Path(str(files("f5_tts").joinpath(PACKAGED_REFERENCE)))
    return Voice(backend=BACKEND, name="f5-default", speed=speed, reference_audio=str(path),
                 reference_text=PACKAGED_REFERENCE_TEXT)


class F5Tts:
    def __init__(
        self,
        *,
        ckpt: Path,
        vocoder_dir: Path,
        model: str = "F5TTS_v1_Base",
        vocab: str = "",
        device: str = "cuda",
        nfe_step: int = 32,
        cfg_strength: float = 2.0,
        sway_sampling: float = -1.0,
        crossfade_ms: float = 150.0,
        seed: int = 0,
        speed: float = 1.0,
        cache_size: int = 32,
        default_voice: Voice | None = None,
        thread: ModelThread | None = None,
    ) -> None:
        missing = [p for p in (ckpt, vocoder_dir / "config.yaml", vocoder_dir / "pytorch_model.bin")
                   if not p.is_file()]
        if missing:
            raise BackendError(
                "tts", f"f5-tts weights not found: {', '.join(map(str, missing))} "
                "(run tools/download-models f5-tts, or set tts.f5_ckpt and tts.f5_vocoder)"
            )
        torch, f5_model, utils_infer = _import_f5()
        self._torch = torch
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("tts", f"f5-tts: tts.device={device} but torch sees no CUDA GPU")
        config = _model_config(model)
        mel = config.model.mel_spec
        if mel.mel_spec_type != "vocos":
            raise BackendError("tts", f"f5-tts: only the vocos vocoder is supported, not "
                                      f"{mel.mel_spec_type}")
        backbone = getattr(f5_model, str(config.model.backbone), None)
        if backbone is None:
            raise BackendError("tts", f"f5-tts: unknown backbone {config.model.backbone}")
        started = time.perf_counter()
        try:
            self._model = utils_infer.load_model(
                backbone, config.model.arch, str(ckpt), mel_spec_type="vocos",
                vocab_file=vocab, ode_method="euler", use_ema=True, device=device,
            )
            self._vocoder = utils_infer.load_vocoder(
                "vocos", is_local=True, local_path=str(vocoder_dir), device=device
            )
        except Exception as exc:
            raise BackendError("tts", f"cannot load f5-tts from {ckpt}: {exc}") from exc
        log.info("f5-tts %s loaded on %s in %.2fs", model, device,
                 time.perf_counter() - started)
        self._convert_text = f5_model.utils.convert_char_to_pinyin
        self._chunk_text = utils_infer.chunk_text
        self.sample_rate: int = int(mel.target_sample_rate)
        self._hop = int(mel.hop_length)
        self._device = device
        self._nfe_step = nfe_step
        self._cfg_strength = cfg_strength
        self._sway = sway_sampling
        self._crossfade_ms = crossfade_ms
        self._seed = seed
        self.cache: ProfileCache[PreparedReference] = ProfileCache(cache_size)
        self._default = default_voice or packaged_voice(speed)
        self.name = f"f5-tts {config.model.name} ({device}, {nfe_step} steps)"
        # Shared with the other GPU models of its device: a first chunk jumps the queue.
        self.thread = thread or ModelThread("tts-f5")
        self._stop: threading.Event | None = None
        # Checked before every transformer pass, i.e. between flow-matching steps.
        self._model.transformer.register_forward_pre_hook(self._check_stop)

    def _check_stop(self, module: Any, args: Any) -> None:
        if self._stop is not None and self._stop.is_set():
            raise _Cancelled

    def voices(self) -> list[str]:
        return []  # every voice is a profile with a reference clip

    def languages(self, voice: Voice) -> frozenset[str]:
        # F5-TTS v1 Base was trained on English and Chinese (Emilia).
        return frozenset({"en", "zh"})

    def default_voice(self) -> Voice:
        return self._default

    def prepare(self, reference: Reference) -> PreparedReference:
        """Decodes, trims and encodes a reference clip (on the model's thread)."""
        torch = self._torch
        audio = read_audio(reference.path, self.sample_rate)
        audio = clip_at_pause(audio, self.sample_rate, MAX_REFERENCE_S / 2, MAX_REFERENCE_S)
        audio = trim_silence(audio, self.sample_rate, keep_head_ms=0, keep_tail_ms=0)
        if audio.size < self.sample_rate // 2:
            raise BackendError("tts", f"reference clip {reference.path} has under 0.5 s of speech")
        audio = np.concatenate([audio, np.zeros(self.sample_rate // 20, dtype=np.float32)])
        rms = float(np.sqrt(np.mean(audio * audio)))
        if rms < TARGET_RMS:
            audio = audio * (TARGET_RMS / rms)
        wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        with torch.inference_mode():
            mel = self._model.mel_spec(wave.to(self._device)).permute(0, 2, 1)
        text = reference.text
        # F5-TTS's own rules: the reference ends a sentence, then a space.
        if not text.endswith(". ") and not text.endswith("。"):
            text += " " if text.endswith(".") else ". "
        if len(text[-1].encode("utf-8")) == 1:
            text += " "
        return PreparedReference(mel=mel, frames=audio.size // self._hop, rms=rms, text=text,
                                 seconds=audio.size / self.sample_rate)

    def batches(self, text: str, reference: PreparedReference, speed: float) -> list[str]:
        """Splits text at punctuation into batches that fit F5-TTS's ~22 s window."""
        ref_bytes = len(reference.text.encode("utf-8"))
        max_chars = int(ref_bytes / reference.seconds * (22 - reference.seconds) * speed)
        return [b for b in self._chunk_text(text.strip(), max_chars=max(max_chars, 20)) if b]

    def _generate(self, text: str, ref: PreparedReference, speed: float, steps: int) -> Audio:
        torch = self._torch
        ref_bytes = len(ref.text.encode("utf-8"))
        gen_bytes = len(text.encode("utf-8"))
        # F5-TTS's duration rule: the reference's pace; very short texts get more time.
        pace = 0.3 if gen_bytes < 10 else speed
        duration = ref.frames + int(ref.frames / ref_bytes * gen_bytes / pace)
        with torch.inference_mode():
            mel, _ = self._model.sample(
                cond=ref.mel,
                text=self._convert_text([ref.text + text]),
                duration=duration,
                steps=steps,
                cfg_strength=self._cfg_strength,
                sway_sampling_coef=self._sway,
                seed=self._seed,
            )
            mel = mel.to(torch.float32)[:, ref.frames :, :].permute(0, 2, 1)
            wave = self._vocoder.decode(mel)
            if ref.rms < TARGET_RMS:
                wave = wave * (ref.rms / TARGET_RMS)
            out: Audio = wave.squeeze().float().cpu().numpy().astype(np.float32).reshape(-1)
        return out

    def _synthesize(self, text: str, voice: Voice, stop: threading.Event) -> Iterator[Pcm]:
        reference = self.cache.get(reference_of(voice), self.prepare)
        speed = voice.speed if voice.speed > 0 else 1.0
        steps = int(voice.params.get("nfe_step", self._nfe_step))
        joiner = StreamJoiner(self.sample_rate, self._crossfade_ms)
        try:
            for batch in self.batches(text, reference, speed):
                if stop.is_set():
                    return
                # Set at every step: the thread steps other streams in between.
                self._stop = stop
                wave = self._generate(batch, reference, speed, steps)
                wave = trim_silence(wave, self.sample_rate)
                ready = joiner.push(wave)
                if ready.size:
                    yield to_pcm16(ready)
            tail = joiner.finish()
            if tail.size:
                yield to_pcm16(tail)
        except _Cancelled:
            return
        finally:
            self._stop = None
            self._model.transformer.clear_cache()  # a cancelled pass leaves its text cached

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        if voice.backend != BACKEND:
            voice = self._default
        with backend_errors("tts", "f5-tts: "):
            async for pcm in self.thread.iterate(
                    lambda stop: self._synthesize(text, voice, stop), priority=priority):
                yield pcm

    async def warmup(self) -> None:
        async for _ in self.synthesize("Hello there.", self._default):
            pass

    async def aclose(self) -> None:
        self.thread.close()
