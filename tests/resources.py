"""What a leak would leave behind in this process: event-loop tasks, threads, file
descriptors, resident memory. Compared before and after with a settle wait."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    tasks: int
    threads: int
    fds: int

    def within(self, baseline: Resources) -> bool:
        return (self.tasks <= baseline.tasks and self.threads <= baseline.threads
                and self.fds <= baseline.fds)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def now() -> Resources:
    return Resources(len(asyncio.all_tasks()), threading.active_count(),
                     len(os.listdir("/proc/self/fd")))


async def settled(baseline: Resources, timeout_s: float = 20.0) -> Resources:
    """The resources once back at ``baseline`` (or what is left after ``timeout_s``):
    closing peers, their SCTP and DTLS tasks, and the recorders' threads take a while."""
    deadline = time.monotonic() + timeout_s
    # Polled: no event says "all closed".
    while not (current := now()).within(baseline) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    return current
