"""The conversation's hold on its reply's local LLM, read between tokens."""

from __future__ import annotations

import time


class CpuGate:
    """Lets the conversation hold its reply's local LLM between tokens.

    Held while the reply's first chunk is synthesized: on 2 cores that TTS must not
    share them with the LLM writing chunks that won't play for seconds (never longer
    than MAX_WAIT_S, whatever the conversation does). Paced while the reply is far
    enough ahead of its playout: the CPU goes to calls waiting for their first words.
    Set on the event loop, read on a model thread. Remote backends ignore it.
    """

    MAX_WAIT_S = 2.0

    def __init__(self) -> None:
        self._held_at: float | None = None
        self.paced = False

    def hold(self) -> None:
        if self._held_at is None:
            self._held_at = time.monotonic()

    def release(self) -> None:
        self._held_at = None

    @property
    def held(self) -> bool:
        return self._held_at is not None

    def is_open(self) -> bool:
        """May the LLM take its next step?"""
        if self.paced:
            return False
        held_at = self._held_at
        return held_at is None or time.monotonic() - held_at > self.MAX_WAIT_S
