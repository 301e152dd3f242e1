"""The built-in backends as factories: name -> factory(settings, shared) -> backend.

A factory imports its backend's module when called, so a backend whose libraries are
not installed (torch, CosyVoice) costs nothing until it is configured. A plugin's
factory (see `avatar_rtc.plugins`) has the same signature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from avatar_rtc.backends.base import LanguageModel, SpeechToText, TextToSpeech
from avatar_rtc.backends.cpu_turns import CpuTurns
from avatar_rtc.backends.live_calls import LiveCalls
from avatar_rtc.backends.model_thread import ModelThread
from avatar_rtc.backends.thread_choice import ThreadChoice
from avatar_rtc.settings import Settings

B = TypeVar("B")


@dataclass
class Shared:
    """What the backends of one process share, built once by `load_backends`.

    `cpu`: the turns the local models take on the CPU (None: they run side by side).
    """

    live_calls: LiveCalls = field(default_factory=LiveCalls)
    cpu: CpuTurns | None = None
    _device_threads: dict[str, ModelThread] = field(default_factory=dict, init=False,
                                                    repr=False)

    def cpu_for(self, device: str) -> CpuTurns | None:
        """The CPU turns a model on `device` takes part in (a GPU model takes none)."""
        return self.cpu if device == "cpu" else None

    def device_thread(self, device: str) -> ModelThread:
        """The one model thread of the cloning TTS models on `device`: their requests
        take turns, most urgent first, instead of contending for the GPU. On the CPU
        it also takes turns with the embedded models (`cpu`), as they do."""
        if device not in self._device_threads:
            self._device_threads[device] = ModelThread(f"tts-{device}",
                                                       cpu=self.cpu_for(device))
        return self._device_threads[device]

    def thread_choice(self, most: int) -> ThreadChoice:
        """Picks a CPU model's thread count, up to `most`, counting the live calls."""
        return ThreadChoice(most, calls=self.live_calls)


Factory = Callable[[Settings, Shared], B]


def _models_dir(settings: Settings) -> Path:
    return Path(settings.storage.data_dir) / "models"


def faster_whisper(settings: Settings, shared: Shared) -> SpeechToText:
    from avatar_rtc.backends.stt_whisper import WhisperStt

    s = settings.stt
    return WhisperStt(s.model, cache_dir=_models_dir(settings), device=s.device,
                      compute_type=s.compute_type, cpu_threads=s.cpu_threads,
                      language=s.language, beam_size=s.beam_size,
                      min_window_s=s.min_window_s, cpu=shared.cpu_for(s.device))


def llama_cpp(settings: Settings, shared: Shared) -> LanguageModel:
    from avatar_rtc.backends.llm_llamacpp import LlamaCppLlm

    s = settings.llm
    return LlamaCppLlm(
        s.model_path, n_threads=s.n_threads, n_batch_threads=s.n_batch_threads,
        n_ctx=s.n_ctx, max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed,
        # One KV cache per call in flight, so no call evicts another's.
        max_contexts=settings.server.max_calls, cpu=shared.cpu, weights=s.weights,
        cache_dir=_models_dir(settings), thread_choice=shared.thread_choice(s.n_threads),
        model=s.model,
    )


def openai(settings: Settings, shared: Shared) -> LanguageModel:
    from avatar_rtc.backends.llm_openai import OpenAiLlm, Resilience

    s = settings.llm
    resilience = Resilience(connect_timeout_s=s.connect_timeout_s,
                            first_token_timeout_s=s.first_token_timeout_s,
                            token_timeout_s=s.token_timeout_s, retries=s.retries,
                            backoff_s=s.retry_backoff_s)
    return OpenAiLlm(s.base_url, model=s.model, api_key=s.api_key, max_tokens=s.max_tokens,
                     temperature=s.temperature, seed=s.seed, timeout_s=s.request_timeout_s,
                     fallback_base_urls=s.fallback_base_urls, resilience=resilience)


def piper(settings: Settings, shared: Shared) -> TextToSpeech:
    from avatar_rtc.backends.tts_piper import PiperTts

    s = settings.tts
    return PiperTts(s.voice, voices_dir=Path(settings.storage.data_dir) / "voices",
                    threads=s.threads, speed=s.speed, cpu=shared.cpu,
                    thread_choice=shared.thread_choice(s.threads))


def f5_tts(settings: Settings, shared: Shared) -> TextToSpeech:
    from avatar_rtc.backends.tts_f5 import F5Tts
    from avatar_rtc.models_download import F5_CKPT, VOCOS, default_path

    s = settings.tts
    data_dir = Path(settings.storage.data_dir)
    return F5Tts(
        ckpt=Path(s.f5_ckpt) if s.f5_ckpt else default_path(data_dir, F5_CKPT),
        vocoder_dir=Path(s.f5_vocoder) if s.f5_vocoder else default_path(data_dir, VOCOS),
        model=s.f5_model, vocab=s.f5_vocab, device=s.device, nfe_step=s.f5_nfe_step,
        cfg_strength=s.f5_cfg_strength, sway_sampling=s.f5_sway_sampling,
        crossfade_ms=s.crossfade_ms, seed=s.seed, speed=s.speed,
        cache_size=s.profile_cache_size, thread=shared.device_thread(s.device),
    )


def cosyvoice(settings: Settings, shared: Shared) -> TextToSpeech:
    from avatar_rtc.backends.tts_cosyvoice import CosyVoiceTts
    from avatar_rtc.models_download import COSYVOICE, default_path

    s = settings.tts
    data_dir = Path(settings.storage.data_dir)
    model_dir = (Path(s.cosyvoice_model) if s.cosyvoice_model
                 else default_path(data_dir, COSYVOICE))
    return CosyVoiceTts(
        model_dir, device=s.device, fp16=s.cosyvoice_fp16, stream=s.cosyvoice_stream,
        crossfade_ms=s.crossfade_ms, speed=s.speed, cache_size=s.profile_cache_size,
        thread=shared.device_thread(s.device),
    )


STT: dict[str, Factory[SpeechToText]] = {"faster-whisper": faster_whisper}
LLM: dict[str, Factory[LanguageModel]] = {"llama-cpp": llama_cpp, "openai": openai}
TTS: dict[str, Factory[TextToSpeech]] = {"piper": piper, "f5-tts": f5_tts,
                                         "cosyvoice": cosyvoice}
