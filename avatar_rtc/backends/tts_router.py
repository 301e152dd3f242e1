"""Several TTS backends behind one: a voice's `backend` picks which one speaks.

The conversation sees a single TextToSpeech with one sample rate. When the loaded
backends disagree (Piper 22.05 kHz, F5-TTS 24 kHz), every stream is resampled to the
outbound 48 kHz with one stateful resampler per stream, so the pieces of a sentence
join without the edge effects of resampling each piece on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from avatar_rtc.backends.base import BackendError, Pcm, TextToSpeech, Voice, speaks
from avatar_rtc.backends.priority import Priority
from media.resample import PcmResampler

COMMON_RATE = 48000  # the WebRTC outbound rate: resampling to it here costs nothing later


class TtsRouter:
    def __init__(self, backends: Mapping[str, TextToSpeech], default: str,
                 unavailable: Mapping[str, str] | None = None) -> None:
        if default not in backends:
            raise ValueError(f"default TTS backend {default!r} is not loaded")
        self._backends = dict(backends)
        self._default = default
        self._unavailable = dict(unavailable or {})
        rates = {b.sample_rate for b in self._backends.values()}
        self.sample_rate: int = rates.pop() if len(rates) == 1 else COMMON_RATE
        self.name = " + ".join(b.name for b in self._backends.values())

    def backend_for(self, voice: Voice) -> TextToSpeech:
        backend = self._backends.get(voice.backend)
        if backend is not None:
            return backend
        reason = self._unavailable.get(voice.backend)
        if reason is not None:
            raise BackendError("tts", f"TTS backend {voice.backend} is unavailable: {reason}")
        have = ", ".join(sorted(self._backends))
        raise BackendError("tts", f"TTS backend {voice.backend!r} is not loaded; have {have}")

    async def synthesize(self, text: str, voice: Voice, *,
                         priority: Priority | None = None) -> AsyncIterator[Pcm]:
        backend = self.backend_for(voice)
        audio = backend.synthesize(text, voice, priority=priority)
        resampler = (PcmResampler(backend.sample_rate, self.sample_rate)
                     if backend.sample_rate != self.sample_rate else None)
        try:
            async for pcm in audio:
                out = resampler.process(pcm) if resampler is not None else pcm
                if out.size:
                    yield out
            if resampler is not None:
                tail = resampler.flush()
                if tail.size:
                    yield tail
        finally:
            await audio.aclose()  # type: ignore[attr-defined]

    def voices(self) -> list[str]:
        return sorted({name for b in self._backends.values() for name in b.voices()})

    def languages(self, voice: Voice) -> frozenset[str]:
        try:
            return speaks(self.backend_for(voice), voice)
        except BackendError:
            return frozenset()

    def default_voice(self) -> Voice:
        return self._backends[self._default].default_voice()

    async def warmup(self) -> None:
        for backend in self._backends.values():
            await backend.warmup()

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
