"""CosyVoice2: zero-shot voice cloning, the high-quality backend.

CosyVoice's code comes from the `cosyvoice-minicpmo` package (built from
FunAudioLLM/CosyVoice), installed with the imports its inference path needs by
`tools/setup --gpu` (docs/gpu.md). `cosyvoice_engine` drives CosyVoice2's own frontend
and model classes; torch and cosyvoice are imported only when this backend loads.

A voice profile's reference clip becomes CosyVoice's prompt (its text tokens, speech
tokens, mel frames and speaker embedding) once per profile (`ProfileCache`), then each
sentence streams: CosyVoice's LLM writes speech tokens on a thread of its own, and
every hop of 25 tokens (about a second of audio) goes through the flow and HiFT on
the model thread shared with the other GPU voices, which serves a reply's first audio
before replies already playing. CosyVoice blends its own hops, so the pieces pass
straight through (only the stream's two ends are faded). Without streaming, or at a
speed other than 1, a sentence comes whole.

Cancelling stops CosyVoice's LLM thread at its next token and drops its state.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avatar_rtc.backends.base import BackendError, Pcm, Voice, backend_errors
from avatar_rtc.backends.crossfade import StreamJoiner, to_pcm16, trim_silence
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

BACKEND = "cosyvoice"
INSTALL_HINT = ("run tools/setup --gpu (pip install 'avatar-rtc[cosyvoice]', then "
                "pip install --no-deps cosyvoice-minicpmo==0.1.0 openai-whisper==20250625)")
MAX_REFERENCE_S = 20.0  # CosyVoice's speech tokenizer takes at most 30 s
PROMPT_RATE = 16000  # what CosyVoice's speech tokenizer and speaker encoder take


@dataclass(frozen=True)
class PreparedSpeaker:
    spk_id: str
    inputs: dict[str, Any]  # CosyVoice's prompt tensors, on the model's device


def load_engine(model_dir: Path, device: str, fp16: bool) -> Any:
    """CosyVoice2's frontend and model from `model_dir` (a CosyVoice2Engine)."""
    without_mismatched_extension()  # CosyVoice imports torchaudio
    try:
        import torch

        from avatar_rtc.backends.cosyvoice_engine import CosyVoice2Engine
    except ImportError as exc:
        raise BackendError("tts", f"cosyvoice is not installed ({exc.name} is missing): "
                                  f"{INSTALL_HINT}") from None
    # CosyVoice puts itself on cuda whenever torch sees a GPU, always the default one.
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError("tts", f"cosyvoice: tts.device={device} but torch sees no CUDA GPU")
    if device not in ("cuda", "cuda:0") and torch.cuda.is_available():
        raise BackendError("tts", "cosyvoice always runs on the default CUDA device; "
                                  "choose it with CUDA_VISIBLE_DEVICES and tts.device=cuda")
    return CosyVoice2Engine(model_dir, fp16=fp16)


class CosyVoiceTts:
    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cuda",
        fp16: bool = True,
        stream: bool = True,
        crossfade_ms: float = 150.0,
        speed: float = 1.0,
        cache_size: int = 32,
        default_voice: Voice | None = None,
        thread: ModelThread | None = None,
    ) -> None:
        if not (model_dir / "cosyvoice2.yaml").is_file():
            raise BackendError("tts", f"cosyvoice weights not found: {model_dir} (run tools/"
                                      "download-models cosyvoice, or set tts.cosyvoice_model)")
        started = time.perf_counter()
        try:
            self._engine = load_engine(model_dir, device, fp16)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError("tts", f"cannot load cosyvoice from {model_dir}: {exc}") from exc
        log.info("cosyvoice %s loaded in %.2fs", model_dir.name, time.perf_counter() - started)
        self.sample_rate: int = self._engine.sample_rate
        self._stream = stream
        self._crossfade_ms = crossfade_ms
        self.cache: ProfileCache[PreparedSpeaker] = ProfileCache(cache_size)
        self._default = default_voice
        self._speed = speed
        fp16_note = ", fp16" if self._engine.fp16 else ""
        self.name = f"cosyvoice {model_dir.name} ({self._engine.device}{fp16_note})"
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
        """CosyVoice's prompt from the profile's clip, once (on the model thread)."""
        spk_id = "avatar-" + hashlib.sha256(repr(reference.key).encode()).hexdigest()[:16]
        audio = read_audio(reference.path, PROMPT_RATE)
        audio = clip_at_pause(audio, PROMPT_RATE, MAX_REFERENCE_S / 2, MAX_REFERENCE_S)
        audio = trim_silence(audio, PROMPT_RATE, keep_head_ms=50, keep_tail_ms=100)
        if audio.size < PROMPT_RATE // 2:
            raise BackendError("tts", f"reference clip {reference.path} has under 0.5 s of speech")
        return PreparedSpeaker(spk_id, self._engine.speaker(reference.text, audio))

    def _synthesize(self, text: str, voice: Voice, stop: threading.Event) -> Iterator[Pcm]:
        speaker = self.cache.get(reference_of(voice), self.prepare)
        speed = voice.speed if voice.speed > 0 else 1.0
        # CosyVoice changes the speed of a whole sentence only, not of a stream.
        stream = self._stream and speed == 1.0
        joiner = StreamJoiner(self.sample_rate, 0.0 if stream else self._crossfade_ms)
        pieces = self._engine.synthesize(text, speaker.inputs, stop, stream=stream,
                                         speed=speed)
        try:
            for audio in pieces:
                if stop.is_set():
                    return
                ready = joiner.push(audio if stream else trim_silence(audio, self.sample_rate))
                if ready.size:
                    yield to_pcm16(ready)
            tail = joiner.finish()
            if tail.size:
                yield to_pcm16(tail)
        finally:
            pieces.close()

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
