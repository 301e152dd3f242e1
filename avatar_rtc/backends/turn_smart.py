"""Smart Turn v3.2: has the speaker finished their turn, judged from the sound alone.

An 8 MB int8 ONNX model (BSD-2-Clause, Daily; licence text in
avatar_rtc/licenses/smart-turn.txt) that hears the last 8 s of an utterance as
Whisper's 80-bin log-mel features and says how likely the speaker is done: a falling
pitch and a finished word say "done", a filler or a held vowel "going on". Its weights
ship inside the `pipecat-ai` wheel, installed without its dependencies: the file is
read from there, pipecat itself is never imported.

On the 2-core VM one call costs ~90 ms of one core (onnxruntime, one thread). It runs on
its own model thread, beside the transcript of the same pause on the other core.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_rtc.backends.base import BackendError, Pcm, backend_errors
from avatar_rtc.backends.model_thread import ModelThread
from avatar_rtc.backends.priority import Priority

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 8 * SAMPLE_RATE  # the model hears the last 8 s, zero-padded in front
_PACKAGE = "pipecat-ai"
_MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


def packaged_model_path() -> Path:
    """The ONNX file inside the installed pipecat-ai wheel."""
    try:
        distribution = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise BackendError("turn", f"the Smart Turn weights come with the {_PACKAGE} "
                                   f"package, which is not installed (tools/setup "
                                   f"installs it)") from None
    path = Path(str(distribution.locate_file(_MODEL_FILE)))
    if not path.is_file():
        raise BackendError("turn", f"{_PACKAGE} is installed but has no {_MODEL_FILE}")
    return path


def model_input(audio: npt.NDArray[np.float32], extractor: Any) -> npt.NDArray[np.float32]:
    """The model's input for float audio in [-1, 1]: the last 8 s, zero-padded in front,
    normalised to zero mean and unit variance, as log-mel features (1, 80, 800)."""
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    tail = audio[-WINDOW_SAMPLES:]
    if tail.size:
        window[-tail.size:] = tail
    window = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
    features = extractor(window, padding=0)
    return np.asarray(features, dtype=np.float32)[np.newaxis]


class SmartTurn:
    """One ONNX session shared by every call, on one model thread."""

    name = "smart-turn v3.2 (onnxruntime)"

    def __init__(self, model_path: Path | None = None) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        path = model_path or packaged_model_path()
        options = onnxruntime.SessionOptions()
        # Two threads were slower than one on two busy cores (130 against 90 ms).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        started = time.perf_counter()
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BackendError("turn", f"cannot load {path}: {exc}") from exc
        self._extractor = FeatureExtractor(feature_size=80, chunk_length=8)
        log.info("%s loaded in %.2fs", self.name, time.perf_counter() - started)
        # Its own thread: a pause's transcript runs on the other core meanwhile.
        self._thread = ModelThread("turn")

    def _probability(self, audio: npt.NDArray[np.float32]) -> float:
        features = model_input(audio, self._extractor)
        (output,) = self._session.run(None, {"input_features": features})
        return float(np.asarray(output).reshape(-1)[0])

    async def probability(self, pcm: Pcm, sample_rate: int, *,
                          priority: Priority | None = None) -> float:
        """How likely the utterance `pcm` is finished, 0..1."""
        if sample_rate != SAMPLE_RATE:
            raise BackendError("turn", f"Smart Turn needs 16 kHz audio, got {sample_rate}")
        audio = pcm.astype(np.float32) / 32768.0
        with backend_errors("turn"):
            return await self._thread.run(self._probability, audio, priority=priority)

    async def warmup(self) -> None:
        await self.probability(np.zeros(SAMPLE_RATE, dtype=np.int16), SAMPLE_RATE)

    async def aclose(self) -> None:
        self._thread.close()
