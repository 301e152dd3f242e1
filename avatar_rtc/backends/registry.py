"""Builds the configured backends once per process; every call shares them."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from avatar_rtc.backends.base import LanguageModel, SpeechToText, TextToSpeech, VoiceActivityModel
from avatar_rtc.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Backends:
    vad: VoiceActivityModel
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech

    def describe(self) -> dict[str, str]:
        return {"vad": self.vad.name, "stt": self.stt.name, "llm": self.llm.name,
                "tts": self.tts.name}

    async def aclose(self) -> None:
        for backend in (self.stt, self.llm, self.tts):
            await backend.aclose()


def _build(settings: Settings) -> Backends:
    from avatar_rtc.backends.stt_whisper import WhisperStt
    from avatar_rtc.backends.tts_piper import PiperTts
    from avatar_rtc.backends.vad_silero import SileroVad

    data_dir = Path(settings.storage.data_dir)
    vad = SileroVad()
    stt = WhisperStt(
        settings.stt.model,
        cache_dir=data_dir / "models",
        device=settings.stt.device,
        compute_type=settings.stt.compute_type,
        cpu_threads=settings.stt.cpu_threads,
        language=settings.stt.language,
        beam_size=settings.stt.beam_size,
        min_window_s=settings.stt.min_window_s,
    )
    llm: LanguageModel
    if settings.llm.backend == "openai":
        from avatar_rtc.backends.llm_openai import OpenAiLlm

        llm = OpenAiLlm(
            settings.llm.base_url,
            model=settings.llm.model,
            api_key=settings.llm.api_key,
            max_tokens=settings.llm.max_tokens,
            temperature=settings.llm.temperature,
            seed=settings.llm.seed,
            timeout_s=settings.llm.request_timeout_s,
        )
    else:
        from avatar_rtc.backends.llm_llamacpp import LlamaCppLlm

        llm = LlamaCppLlm(
            settings.llm.model_path,
            n_threads=settings.llm.n_threads,
            n_batch_threads=settings.llm.n_batch_threads,
            n_ctx=settings.llm.n_ctx,
            max_tokens=settings.llm.max_tokens,
            temperature=settings.llm.temperature,
            seed=settings.llm.seed,
        )
    tts = PiperTts(
        settings.tts.voice,
        voices_dir=data_dir / "voices",
        threads=settings.tts.threads,
        speed=settings.tts.speed,
    )
    return Backends(vad=vad, stt=stt, llm=llm, tts=tts)


async def load_backends(settings: Settings) -> Backends:
    """Loads every model off the event loop, then warms each one up."""
    started = time.perf_counter()
    backends = await asyncio.to_thread(_build, settings)
    await backends.stt.warmup()
    await backends.llm.warmup(settings.llm.system_prompt)
    await backends.tts.warmup()
    log.info("backends ready in %.2fs: %s", time.perf_counter() - started, backends.describe())
    return backends
