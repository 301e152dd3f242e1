"""CosyVoice 2/3: zero-shot voice cloning, the high-quality backend.

CosyVoice is not on PyPI (the "cosyvoice" package there is an unrelated wrapper that
lacks the model code). Install it from a clone of FunAudioLLM/CosyVoice with its
requirements and set `tts.cosyvoice_repo` to the clone; it is imported lazily from
there. Its documented API is used as is: `AutoModel(model_dir=...)`,
`add_zero_shot_spk(prompt_text, prompt_wav, spk_id)` once per voice profile, then
`inference_zero_shot(text, "", "", zero_shot_spk_id=spk_id, stream=True, speed=...)`
per sentence.

Streaming: CosyVoice yields audio every token hop and already blends its hops, so the
pieces pass straight through (only the stream's two ends are faded). Without streaming
it yields one piece per text segment, and those joins are trimmed and cross-faded.

Cancelling closes CosyVoice's generator; the thread CosyVoice starts for its LLM keeps
generating the speech tokens of that one sentence before it ends (its API has no way
to stop it), so a cancelled sentence still costs its LLM time on the GPU.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import sys
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
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

log = logging.getLogger(__name__)

BACKEND = "cosyvoice"
INSTALL_HINT = (
    "CosyVoice is not on PyPI: clone FunAudioLLM/CosyVoice (with --recursive), "
    "pip install -r its requirements.txt, and set tts.cosyvoice_repo to the clone"
)
MAX_REFERENCE_S = 20.0  # CosyVoice's speech tokenizer takes at most 30 s
COSYVOICE3_PREFIX = "You are a helpful assistant.<|endofprompt|>"

Loader = Callable[[Path, bool], Any]
"""Builds the model from its folder; the second argument is fp16."""


@dataclass(frozen=True)
class PreparedSpeaker:
    spk_id: str


def import_loader(repo: str, device: str) -> Loader:
    """CosyVoice's AutoModel, imported from the clone at `repo` (or the path)."""
    if repo:
        root = Path(repo).expanduser()
        if not (root / "cosyvoice" / "cli" / "cosyvoice.py").is_file():
            raise BackendError("tts", f"tts.cosyvoice_repo={repo} is not a CosyVoice clone")
        for path in (root / "third_party" / "Matcha-TTS", root):
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
    try:
        import torch
        from cosyvoice.cli import cosyvoice as cli
    except ImportError as exc:
        raise BackendError("tts", f"cosyvoice is not installed ({exc.name} is missing): "
                                  f"{INSTALL_HINT}") from None
    # CosyVoice puts itself on cuda whenever torch sees a GPU, always the default one.
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError("tts", f"cosyvoice: tts.device={device} but torch sees no CUDA GPU")
    if device not in ("cuda", "cuda:0") and torch.cuda.is_available():
        raise BackendError("tts", "cosyvoice always runs on the default CUDA device; "
                                  "choose it with CUDA_VISIBLE_DEVICES and tts.device=cuda")
    auto = getattr(cli, "AutoModel", None)

    def load(model_dir: Path, fp16: bool) -> Any:
        if auto is not None:
            return auto(model_dir=str(model_dir), fp16=fp16)
        return cli.CosyVoice2(str(model_dir), fp16=fp16)  # releases before AutoModel

    return load


def repo_voice(repo: str, speed: float = 1.0) -> Voice | None:
    """The zero-shot prompt clip of CosyVoice's own examples, as the default voice."""
    clip = Path(repo).expanduser() / "asset" / "zero_shot_prompt.wav"
    if not repo or not clip.is_file():
        return None
    return Voice(backend=BACKEND, name="cosyvoice-default", speed=speed,
                 reference_audio=str(clip), reference_text="希望你以后能够做的比我还好呦。")


def _as_audio(tensor: Any) -> Audio:
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().float().cpu().numpy()
    return np.asarray(tensor, dtype=np.float32).reshape(-1)


def _write_wav(path: Path, audio: Audio, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(to_pcm16(audio).tobytes())
    partial.replace(path)


class CosyVoiceTts:
    def __init__(
        self,
        model_dir: Path,
        *,
        cache_dir: Path,
        repo: str = "",
        device: str = "cuda",
        fp16: bool = True,
        stream: bool = True,
        crossfade_ms: float = 150.0,
        speed: float = 1.0,
        cache_size: int = 32,
        default_voice: Voice | None = None,
        thread: ModelThread | None = None,
        loader: Loader | None = None,
    ) -> None:
        if not model_dir.is_dir():
            raise BackendError("tts", f"cosyvoice weights not found: {model_dir} (run tools/"
                                      "download-models cosyvoice, or set tts.cosyvoice_model)")
        load = loader or import_loader(repo, device)
        started = time.perf_counter()
        try:
            self._model = load(model_dir, fp16)
        except Exception as exc:
            raise BackendError("tts", f"cannot load cosyvoice from {model_dir}: {exc}") from exc
        log.info("cosyvoice %s loaded in %.2fs", model_dir.name, time.perf_counter() - started)
        self.sample_rate: int = int(self._model.sample_rate)
        # Older CosyVoice takes the prompt as a 16 kHz tensor, newer as a file path.
        params = inspect.signature(self._model.add_zero_shot_spk).parameters
        self._prompt_as_tensor = "prompt_speech_16k" in params
        self._needs_prefix = type(self._model).__name__ == "CosyVoice3"
        self._cache_dir = cache_dir
        self._stream = stream
        self._crossfade_ms = 0.0 if stream else crossfade_ms
        self.cache: ProfileCache[PreparedSpeaker] = ProfileCache(cache_size)
        self._default = default_voice
        self._speed = speed
        self.name = f"cosyvoice {model_dir.name} ({device}{', fp16' if fp16 else ''})"
        # Shared with the other GPU models of its device: a first chunk jumps the queue.
        self.thread = thread or ModelThread("tts-cosyvoice")

    def voices(self) -> list[str]:
        return []

    def languages(self, voice: Voice) -> frozenset[str]:
        # CosyVoice 2 speaks Chinese (and Cantonese), English, Japanese and Korean.
        return frozenset({"zh", "en", "ja", "ko", "yue"})

    def default_voice(self) -> Voice:
        if self._default is None:
            return Voice(backend=BACKEND, name="", speed=self._speed)
        return self._default

    def prepare(self, reference: Reference) -> PreparedSpeaker:
        """Registers the profile's clip with CosyVoice once (on the model's thread)."""
        spk_id = "avatar-" + hashlib.sha256(repr(reference.key).encode()).hexdigest()[:16]
        rate = 16000 if self._prompt_as_tensor else 24000
        audio = read_audio(reference.path, rate)
        audio = clip_at_pause(audio, rate, MAX_REFERENCE_S / 2, MAX_REFERENCE_S)
        audio = trim_silence(audio, rate, keep_head_ms=50, keep_tail_ms=100)
        if audio.size < rate // 2:
            raise BackendError("tts", f"reference clip {reference.path} has under 0.5 s of speech")
        text = reference.text
        if self._needs_prefix and "<|endofprompt|>" not in text:
            text = COSYVOICE3_PREFIX + text
        prompt: Any
        if self._prompt_as_tensor:
            import torch

            prompt = torch.from_numpy(np.ascontiguousarray(audio))[None]
        else:
            prompt = str(self._cache_dir / f"{spk_id}.wav")
            _write_wav(Path(prompt), audio, rate)
        if self._model.add_zero_shot_spk(text, prompt, spk_id) is False:
            raise BackendError("tts", f"cosyvoice refused the reference clip {reference.path}")
        return PreparedSpeaker(spk_id=spk_id)

    def _synthesize(self, text: str, voice: Voice, stop: threading.Event) -> Iterator[Pcm]:
        speaker = self.cache.get(reference_of(voice), self.prepare)
        speed = voice.speed if voice.speed > 0 else 1.0
        joiner = StreamJoiner(self.sample_rate, self._crossfade_ms)
        outputs = self._model.inference_zero_shot(
            text, "", "", zero_shot_spk_id=speaker.spk_id, stream=self._stream, speed=speed
        )
        try:
            for output in outputs:
                if stop.is_set():
                    return
                audio = _as_audio(output["tts_speech"])
                if not self._stream:
                    audio = trim_silence(audio, self.sample_rate)
                ready = joiner.push(audio)
                if ready.size:
                    yield to_pcm16(ready)
            tail = joiner.finish()
            if tail.size:
                yield to_pcm16(tail)
        finally:
            close = getattr(outputs, "close", None)
            if close is not None:
                close()

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        if voice.backend != BACKEND and self._default is not None:
            voice = self._default
        with backend_errors("tts", "cosyvoice: "):
            async for pcm in self.thread.iterate(
                    lambda stop: self._synthesize(text, voice, stop), priority=priority):
                yield pcm

    async def warmup(self) -> None:
        if self._default is not None:
            async for _ in self.synthesize("Hello there.", self._default):
                pass

    async def aclose(self) -> None:
        self.thread.close()
