"""LiveCalls: the calls a process serves now, counted by the conversations."""

from __future__ import annotations

import gc

from avatar_rtc.backends.live_calls import LiveCalls


class Call:
    pass


def test_a_call_dropped_without_hanging_up_stops_counting() -> None:
    calls, kept, dropped = LiveCalls(), Call(), Call()
    calls.enter(kept)
    calls.enter(dropped)
    assert calls.crowded
    del dropped  # its setup failed: nobody holds it, nobody will call leave()
    gc.collect()
    assert calls.count == 1 and not calls.crowded
