"""Silero VAD on onnxruntime, streaming 512-sample frames at 16 kHz (no torch).

The ONNX model is the one faster-whisper ships (`assets/silero_vad_v6.onnx`): inputs
are 64 samples of context + 512 new samples, and the LSTM state (h, c), which we carry
per call. One session is shared by every call; onnxruntime's run() is thread-safe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime

CONTEXT_SAMPLES = 64
FRAME_SAMPLES = 512


def packaged_model_path() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


class SileroVad:
    name = "silero-vad (onnxruntime)"
    sample_rate = 16000
    frame_samples = FRAME_SAMPLES

    def __init__(self, model_path: Path | None = None) -> None:
        options = onnxruntime.SessionOptions()
        # A frame costs ~0.1 ms; threads would only add hand-off overhead.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(model_path or packaged_model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    def stream(self) -> SileroVadStream:
        return SileroVadStream(self._session)


class SileroVadStream:
    frame_samples = FRAME_SAMPLES

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self._session = session
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def probability(self, frame: npt.NDArray[np.float32]) -> float:
        """Speech probability of one 512-sample float32 frame in [-1, 1]."""
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"VAD frames are {FRAME_SAMPLES} samples, got {frame.shape}")
        window = np.concatenate([self._context, frame]).reshape(1, -1)
        prob, self._h, self._c = self._session.run(
            None, {"input": window, "h": self._h, "c": self._c}
        )
        self._context = frame[-CONTEXT_SAMPLES:].copy()
        return float(np.asarray(prob).reshape(-1)[0])
