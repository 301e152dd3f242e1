"""Prometheus metrics for one server (served at GET /metrics).

Each app gets its own registry, not prometheus-client's global one, so several apps in
one process (tests) never collide. Stage histograms observe exactly the numbers of
`Turn.timings_ms()`, the ones the data channel, the stored turn and the replay timeline
carry, converted to seconds (Prometheus' base unit).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from avatar_rtc.conversation.turn import Turn

# Turn.timings_ms() key -> (metric name, help). All but stt_ms are measured from the end
# of the user's speech as the server heard it; stt_ms is a duration.
STAGES: dict[str, tuple[str, str]] = {
    "endpoint_ms": (
        "avatar_endpoint_wait_seconds",
        "End-of-speech wait: end of user speech to the end of the turn being confirmed",
    ),
    "stt_ms": ("avatar_stt_seconds", "Duration of the turn's speech-to-text pass"),
    "llm_first_token_ms": (
        "avatar_llm_first_token_seconds", "End of user speech to the LLM's first token"),
    "tts_first_audio_ms": (
        "avatar_tts_first_audio_seconds", "End of user speech to the first synthesized audio"),
    "first_audio_sent_ms": (
        "avatar_voice_to_voice_seconds",
        "Server-side voice-to-voice: end of user speech to the first agent frame sent",
    ),
}

BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5,
           2.0, 3.0, 5.0, 10.0)

# BackendError messages start with their stage ("stt: ..."); anything else is ours.
_BACKEND_STAGES = ("vad", "stt", "llm", "tts")


def error_stage(message: str) -> str:
    """The stage an error event's message names, or "internal"."""
    prefix, sep, _ = message.partition(":")
    return prefix if sep and prefix in _BACKEND_STAGES else "internal"


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # rendered off the loop (no running loop there)
        return 0.0


class Metrics:
    def __init__(self, active_calls: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.stages = {
            key: Histogram(name, text, registry=self.registry, buckets=BUCKETS)
            for key, (name, text) in STAGES.items()
        }
        self.active_calls = Gauge("avatar_active_calls", "Calls in progress",
                                  registry=self.registry)
        if active_calls is not None:
            self.active_calls.set_function(lambda: float(active_calls()))
        self.calls = Counter("avatar_calls", "Calls answered", registry=self.registry)
        self.turns = Counter("avatar_turns", "Turns finished (the user said something)",
                             registry=self.registry)
        self.interruptions = Counter("avatar_interruptions",
                                     "Turns the user talked over (barge-in)",
                                     registry=self.registry)
        self.backchannels = Counter("avatar_backchannels",
                                    "Backchannels over a reply that let it go on",
                                    registry=self.registry)
        # Leaks show here first (tools/soak reads them): RSS and descriptors come from
        # the process collector (process_resident_memory_bytes, process_open_fds).
        ProcessCollector(registry=self.registry)
        Gauge("avatar_asyncio_tasks", "Tasks of the server's event loop",
              registry=self.registry).set_function(_task_count)
        Gauge("avatar_threads", "Threads of the server process",
              registry=self.registry).set_function(lambda: float(threading.active_count()))
        self.errors = Counter("avatar_errors", "Failed turns, by the stage that failed",
                              ["stage"], registry=self.registry)

    def call_started(self) -> None:
        self.calls.inc()

    def observe_turn(self, turn: Turn) -> dict[str, float]:
        """Records a finished turn; returns the timings it observed (Turn.timings_ms())."""
        timings = turn.timings_ms()
        self.observe_timings(timings)
        self.turns.inc()
        if turn.interrupted:
            self.interruptions.inc()
        self.backchannels.inc(len(turn.backchannels))
        return timings

    def observe_timings(self, timings: Mapping[str, float]) -> None:
        for key, histogram in self.stages.items():
            if key in timings:
                histogram.observe(timings[key] / 1000)

    def error(self, message: str) -> None:
        self.errors.labels(stage=error_stage(message)).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
