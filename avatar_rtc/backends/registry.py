"""Builds the configured backends once per process; every call shares them.

Each backend comes from a factory picked by its name in the settings: a built-in one
(`avatar_rtc.backends.factories`) or one an installed package adds through an entry
point (`avatar_rtc.plugins`). Each model is loaded once and has one model
thread; GPU TTS backends on the same device share one, so their requests take turns
instead of contending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from avatar_rtc.admission import Admission, default_probe
from avatar_rtc.backends import factories
from avatar_rtc.backends.base import (
    BackendError,
    EndOfTurnModel,
    LanguageModel,
    SpeechToText,
    TextToSpeech,
    VoiceActivityModel,
)
from avatar_rtc.backends.cpu_turns import CpuTurns
from avatar_rtc.backends.factories import Factory, Shared
from avatar_rtc.backends.live_calls import LiveCalls
from avatar_rtc.plugins import Kind, backend_names, plugins
from avatar_rtc.settings import Settings

log = logging.getLogger(__name__)

B = TypeVar("B")


@dataclass
class Backends:
    vad: VoiceActivityModel
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    # Per configured TTS backend, "tts/<name>": "ready" or "unavailable: <why>".
    status: dict[str, str] = field(default_factory=dict)
    admission: Admission = field(default_factory=Admission)
    # The calls served now: each conversation counts itself in, the models read it.
    live_calls: LiveCalls = field(default_factory=LiveCalls)
    # Hears whether a pause ends the user's turn; None: silence alone decides.
    turn: EndOfTurnModel | None = None

    def describe(self) -> dict[str, str]:
        described = {"vad": self.vad.name, "stt": self.stt.name, "llm": self.llm.name,
                     "tts": self.tts.name, **self.status}
        gpu = self.admission.describe()
        if gpu:
            described["gpu"] = gpu
        if self.turn is not None:
            described["turn"] = self.turn.name
        return described

    async def aclose(self) -> None:
        for backend in (self.stt, self.llm, self.tts, self.turn):
            if backend is not None:
                await backend.aclose()


def factory(kind: Kind, name: str, builtin: Mapping[str, Factory[B]]) -> Factory[B]:
    """The factory of backend `name`: built in, or from the installed package that
    declares it in the entry-point group of `kind`."""
    if name in builtin:
        return builtin[name]
    entry_point = plugins(kind).get(name)
    if entry_point is None:
        raise BackendError(kind, f"unknown {kind} backend {name!r}; have "
                                 f"{', '.join(backend_names(kind))}")
    try:
        loaded: Any = entry_point.load()
    except Exception as exc:
        raise BackendError(kind, f"cannot load {kind} backend {name!r} from "
                                 f"{entry_point.value}: {exc}") from exc
    return cast(Factory[B], loaded)


def _build(settings: Settings) -> Backends:
    from avatar_rtc.backends.vad_silero import SileroVad

    shared = Shared(cpu=CpuTurns() if settings.server.models_take_turns else None)
    vad = SileroVad()
    stt = factory("stt", settings.stt.backend, factories.STT)(settings, shared)
    llm = factory("llm", settings.llm.backend, factories.LLM)(settings, shared)
    tts, status = build_tts(settings, shared)
    admission = Admission(
        max_calls=settings.server.max_calls,
        max_memory_fraction=settings.gpu.max_memory_fraction,
        probe=default_probe(settings.gpu.device_index),
        device=f"cuda:{settings.gpu.device_index}",
    )
    return Backends(vad=vad, stt=stt, llm=llm, tts=tts, status=status, admission=admission,
                    live_calls=shared.live_calls, turn=_turn_model(settings))


def _turn_model(settings: Settings) -> EndOfTurnModel | None:
    if settings.turn.model == "none":
        return None
    from avatar_rtc.backends.turn_smart import SmartTurn

    return SmartTurn()


def build_tts(settings: Settings, shared: Shared | None = None
              ) -> tuple[TextToSpeech, dict[str, str]]:
    """Loads tts.backend (its failure fails startup) and tts.backends (a failure there
    is logged and reported in /health; calls whose profile needs it get that reason)."""
    from avatar_rtc.backends.tts_router import TtsRouter

    shared = shared or Shared()
    default = settings.tts.backend
    wanted = list(dict.fromkeys([default, *settings.tts.backends]))
    loaded: dict[str, TextToSpeech] = {}
    unavailable: dict[str, str] = {}
    for name in wanted:
        try:
            loaded[name] = factory("tts", name, factories.TTS)(settings, shared)
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
    if backends.turn is not None:
        await backends.turn.warmup()
    log.info("backends ready in %.2fs: %s", time.perf_counter() - started, backends.describe())
    return backends
