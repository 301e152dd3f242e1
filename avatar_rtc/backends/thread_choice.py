"""How many threads a model's next step runs on: measured on this machine, now.

A model's thread pool is fastest on every core of an idle machine. When something else
holds a core (other calls' audio, the event loop, the hypervisor's steal time), a pool
that loses a core spins at each barrier until it gets the core back, and one step can
take many times its work. Measured on the 2-core VM, llama.cpp per token:

- idle: 2 threads 14.5 ms, 1 thread 25.5 ms;
- beside one busy process: 2 threads p50 29, p90 150-180 ms and 65-76 ms of CPU;
  1 thread p50 25, p90 27 ms and 25 ms of CPU;
- beside two: 2 threads p90 0.5-0.7 s; 1 thread p90 81-94 ms.

Piper behaved alike (a sentence: 376 ms on 2 threads and 606 on 1 when idle; 700-757
against 624-637 beside one busy process). Neither count wins everywhere, and the load
changes from one second to the next, so each model times its steps on both and takes
the faster, trying the other now and then.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from avatar_rtc.backends.live_calls import LiveCalls


class ThreadChoice:
    """Picks the thread count of a model's next step: `most`, or one.

    Each count keeps the cost (seconds per unit of work: a token, a second of audio)
    of its last SAMPLES steps, and the cheaper mean wins (one thread by a MARGIN): a
    count whose steps now and then stall for a whole time slice loses.

    Now and then the other count runs once, to see whether the load changed: every
    EXPLORE_EVERY picks, twice as many each time `most` loses the lead again (up to
    EXPLORE_MOST): on a machine with every core taken, one step on two threads can
    stall for a second, and a lucky fast one leads to more.

    After a quiet spell (QUIET_S without a step: the user was speaking) the costs are
    stale and `most` runs first: a reply's first tokens get every thread unless they
    are slow now. Used by one model thread only.
    """

    SAMPLES = 5
    QUIET_S = 1.0
    EXPLORE_EVERY = 16
    EXPLORE_MOST = 512
    # One thread takes over only when clearly faster. With one call on the VM, steps
    # on 2 threads cost 34 ms on average against 37 on one (p50 17 against 31: every
    # few tokens another thread took a core for a moment); such a draw is noise, and
    # a first chunk written on one thread came 40-60 ms later.
    MARGIN = 1.25

    def __init__(self, most: int, clock: Callable[[], float] = time.monotonic,
                 calls: LiveCalls | None = None) -> None:
        """`calls`: the process's live calls (none given: it counts none)."""
        self.most = max(1, most)
        self._clock = clock
        self._calls = calls or LiveCalls()
        self._costs: dict[int, deque[float]] = {
            n: deque(maxlen=self.SAMPLES) for n in {self.most, 1}}
        self._last_pick = float("-inf")
        self._best = self.most
        self._explored: int | None = None  # the count the last pick tried
        self._explore_every = self.EXPLORE_EVERY
        self._since_explore = 0

    def cost(self, threads: int) -> float | None:
        """Mean seconds per unit of work of the recent steps on `threads`."""
        costs = self._costs[threads]
        return sum(costs) / len(costs) if costs else None

    def pick(self) -> int:
        if self.most == 1 or self._calls.crowded:
            return 1
        now = self._clock()
        if now - self._last_pick > self.QUIET_S:
            self._costs[self.most].clear()  # measured under a load that has passed
            self._explore_every, self._since_explore = self.EXPLORE_EVERY, 0
        self._last_pick = now
        many, one = self.cost(self.most), self.cost(1)
        if many is None or one is None:  # measure: all the threads first
            return self.most if many is None else 1
        best = self.most if many <= one * self.MARGIN else 1
        if best == 1 and (self._best == self.most or self._explored == self.most):
            # Two threads lost the lead, or a try to get it back: try less often.
            self._explore_every = min(2 * self._explore_every, self.EXPLORE_MOST)
        self._best, self._explored = best, None
        self._since_explore += 1
        if self._since_explore < self._explore_every:
            return best
        self._since_explore = 0
        self._explored = 1 if best == self.most else self.most
        self._costs[self._explored].clear()  # measured under another load
        return self._explored

    def record(self, threads: int, seconds: float, work: float = 1.0) -> None:
        if threads in self._costs and work > 0:
            self._costs[threads].append(seconds / work)
