"""Builds the configured backends once per process; every call shares them.

Each model is loaded once and has one worker thread; GPU TTS backends on the same
device share one worker, so their requests take turns instead of contending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from avatar_rtc.admission import Admission, default_probe
from avatar_rtc.backends.base import (
    BackendError,
    LanguageModel,
    SpeechToText,
    TextToSpeech,
    VoiceActivityModel,
)
from avatar_rtc.backends.scheduler import CpuTurns
from avatar_rtc.backends.worker import ModelWorker
from avatar_rtc.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Backends:
    vad: VoiceActivityModel
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    # Per configured TTS backend, "tts/<name>": "ready" or "unavailable: <why>".
    status: dict[str, str] = field(default_factory=dict)
    admission: Admission = field(default_factory=Admission)

    def describe(self) -> dict[str, str]:
        described = {"vad": self.vad.name, "stt": self.stt.name, "llm": self.llm.name,
                     "tts": self.tts.name, **self.status}
        gpu = self.admission.describe()
        if gpu:
            described["gpu"] = gpu
        return described

    async def aclose(self) -> None:
        for backend in (self.stt, self.llm, self.tts):
            await backend.aclose()


def _build(settings: Settings) -> Backends:
    from avatar_rtc.backends.stt_whisper import WhisperStt
    from avatar_rtc.backends.vad_silero import SileroVad

    data_dir = Path(settings.storage.data_dir)
    cpu = CpuTurns() if settings.server.models_take_turns else None
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
        cpu=cpu if settings.stt.device == "cpu" else None,
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
            # One KV cache per call in flight, so no call evicts another's.
            max_contexts=settings.server.max_calls,
            cpu=cpu,
            weights=settings.llm.weights,
            cache_dir=data_dir / "models",
        )
    tts, status = build_tts(settings, cpu)
    admission = Admission(
        max_calls=settings.server.max_calls,
        max_memory_fraction=settings.gpu.max_memory_fraction,
        probe=default_probe(settings.gpu.device_index),
        device=f"cuda:{settings.gpu.device_index}",
    )
    return Backends(vad=vad, stt=stt, llm=llm, tts=tts, status=status, admission=admission)


def _build_one_tts(name: str, settings: Settings, workers: dict[str, ModelWorker],
                   cpu: CpuTurns | None = None) -> TextToSpeech:
    from avatar_rtc.models_download import COSYVOICE, F5_CKPT, VOCOS, default_path

    s = settings.tts
    data_dir = Path(settings.storage.data_dir)
    if name == "piper":
        from avatar_rtc.backends.tts_piper import PiperTts

        return PiperTts(s.voice, voices_dir=data_dir / "voices", threads=s.threads,
                        speed=s.speed, cpu=cpu)
    if s.device not in workers:
        workers[s.device] = ModelWorker(f"tts-{s.device}")
    worker = workers[s.device]
    if name == "f5-tts":
        from avatar_rtc.backends.tts_f5 import F5Tts

        return F5Tts(
            ckpt=Path(s.f5_ckpt) if s.f5_ckpt else default_path(data_dir, F5_CKPT),
            vocoder_dir=Path(s.f5_vocoder) if s.f5_vocoder else default_path(data_dir, VOCOS),
            model=s.f5_model, vocab=s.f5_vocab, device=s.device, nfe_step=s.f5_nfe_step,
            cfg_strength=s.f5_cfg_strength, sway_sampling=s.f5_sway_sampling,
            crossfade_ms=s.crossfade_ms, seed=s.seed, speed=s.speed,
            cache_size=s.profile_cache_size, worker=worker,
        )
    if name == "cosyvoice":
        from avatar_rtc.backends.tts_cosyvoice import CosyVoiceTts, repo_voice

        model_dir = (Path(s.cosyvoice_model) if s.cosyvoice_model
                     else default_path(data_dir, COSYVOICE))
        return CosyVoiceTts(
            model_dir, cache_dir=data_dir / "cache" / "cosyvoice", repo=s.cosyvoice_repo,
            device=s.device, fp16=s.cosyvoice_fp16, stream=s.cosyvoice_stream,
            crossfade_ms=s.crossfade_ms, speed=s.speed, cache_size=s.profile_cache_size,
            default_voice=repo_voice(s.cosyvoice_repo, s.speed), worker=worker,
        )
    raise BackendError("tts", f"unknown TTS backend {name!r}")


def build_tts(settings: Settings, cpu: CpuTurns | None = None
              ) -> tuple[TextToSpeech, dict[str, str]]:
    """Loads tts.backend (its failure fails startup) and tts.backends (a failure there
    is logged and reported in /health; calls whose profile needs it get that reason)."""
    from avatar_rtc.backends.tts_router import TtsRouter

    default = settings.tts.backend
    wanted = list(dict.fromkeys([default, *settings.tts.backends]))
    loaded: dict[str, TextToSpeech] = {}
    unavailable: dict[str, str] = {}
    workers: dict[str, ModelWorker] = {}
    for name in wanted:
        try:
            loaded[name] = _build_one_tts(name, settings, workers, cpu)
        except BackendError as exc:
            if name == default:
                raise
            unavailable[name] = str(exc).removeprefix("tts: ")
            log.error("TTS backend %s is unavailable: %s", name, unavailable[name])
    status = {f"tts/{name}": "ready" if name in loaded else f"unavailable: {unavailable[name]}"
              for name in wanted}
    if len(wanted) == 1:
        return loaded[default], status
    return TtsRouter(loaded, default, unavailable), status


async def load_backends(settings: Settings) -> Backends:
    """Loads every model off the event loop, then warms each one up."""
    started = time.perf_counter()
    backends = await asyncio.to_thread(_build, settings)
    await backends.stt.warmup()
    await backends.llm.warmup(settings.llm.system_prompt)
    await backends.tts.warmup()
    log.info("backends ready in %.2fs: %s", time.perf_counter() - started, backends.describe())
    return backends
