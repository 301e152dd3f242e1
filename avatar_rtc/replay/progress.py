"""A plain progress bar on stderr: redrawn in place on a terminal, a line per step
otherwise (logs and CI keep a readable trace)."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

WIDTH = 28
_REDRAW_S = 0.1


class ProgressSink(Protocol):
    """What a replay reports its progress to (a Progress, or a tally of several)."""

    def update(self, done: float, note: str | None = None,
               total: float | None = None) -> None: ...


class Progress:
    def __init__(self, total: float, label: str, *, unit: str = "", enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total = max(total, 1e-9)
        self.label = label
        self.unit = unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._tty = self.stream.isatty()
        self._done = 0.0
        self._note = ""
        self._drawn_at = 0.0
        self._last_line = ""
        self._width = 0

    def update(self, done: float, note: str | None = None, total: float | None = None) -> None:
        if total is not None:
            self.total = max(total, 1e-9)
        self._done = min(done, self.total)
        changed = note is not None and note != self._note
        if note is not None:
            self._note = note
        if not self.enabled:
            return
        now = time.monotonic()
        if self._tty:
            if changed or now - self._drawn_at >= _REDRAW_S or self._done >= self.total:
                self._draw(now)
        elif changed:
            self._print_line()

    def _text(self) -> str:
        filled = round(WIDTH * self._done / self.total)
        bar = "#" * filled + "." * (WIDTH - filled)
        amount = (f"{self._done:.0f}/{self.total:.0f}" if not self.unit
                  else f"{self._done:.1f}/{self.total:.1f} {self.unit}")
        return f"{self.label} [{bar}] {amount}  {self._note}".rstrip()

    def _draw(self, now: float) -> None:
        text = self._text()
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)
        self._drawn_at = now

    def _print_line(self) -> None:
        text = self._text()
        if text != self._last_line:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_line = text

    def close(self, note: str | None = None) -> None:
        if note is not None:
            self._note = note
        if not self.enabled:
            return
        if self._tty:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
        else:
            self._print_line()
