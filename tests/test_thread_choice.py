"""ThreadChoice: the thread count of a model's next step follows measured step costs."""

from __future__ import annotations

from avatar_rtc.backends.live_calls import LiveCalls
from avatar_rtc.backends.thread_choice import ThreadChoice


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _choice() -> tuple[ThreadChoice, Clock]:
    clock = Clock()
    return ThreadChoice(2, clock=clock, calls=LiveCalls()), clock


def _run(choice: ThreadChoice, clock: Clock, steps: int, cost: dict[int, float]) -> list[int]:
    """Takes `steps` steps, each costing cost[threads] seconds; the counts picked."""
    picked = []
    for _ in range(steps):
        threads = choice.pick()
        clock.now += cost[threads]
        choice.record(threads, cost[threads])
        picked.append(threads)
    return picked


def test_it_measures_both_counts_then_keeps_the_faster() -> None:
    choice, clock = _choice()
    picked = _run(choice, clock, 40, {2: 0.015, 1: 0.025})  # an idle machine
    assert picked[:2] == [2, 1]
    assert picked[2:].count(2) > 30
    assert 1 in picked[2:]  # tried again now and then


def test_a_count_whose_steps_stall_loses_though_most_of_them_are_fast() -> None:
    choice, _ = _choice()
    choice.pick()
    for _ in range(4):  # beside a busy process: 2 threads mostly fast, now and then stuck
        choice.record(2, 0.02)
    choice.record(2, 0.4)
    for _ in range(5):
        choice.record(1, 0.025)
    assert choice.pick() == 1  # mean 0.096 s against 0.025 s


def test_it_follows_the_load_both_ways() -> None:
    choice, clock = _choice()
    busy = _run(choice, clock, 100, {2: 0.15, 1: 0.03})
    assert busy[-50:].count(1) >= 48
    idle = _run(choice, clock, 600, {2: 0.015, 1: 0.025})
    assert idle[-50:].count(2) >= 45
    back = next(i for i in range(len(idle)) if idle[i:i + 5] == [2] * 5)
    assert back <= ThreadChoice.EXPLORE_MOST  # the tries had become rarer


def test_tries_get_rarer_while_they_lose() -> None:
    choice, clock = _choice()
    picked = _run(choice, clock, 2000, {2: 1.0, 1: 0.03})  # every core taken
    assert picked[100:].count(2) <= 2000 // ThreadChoice.EXPLORE_MOST + 2


def test_after_a_quiet_spell_every_thread_runs_first() -> None:
    choice, clock = _choice()
    assert _run(choice, clock, 200, {2: 0.15, 1: 0.03})[-1] == 1  # busy
    clock.now += ThreadChoice.QUIET_S + 0.1  # the user speaks; nothing runs
    assert choice.pick() == 2
    clock.now += 0.015
    choice.record(2, 0.015)
    assert choice.pick() == 2  # and it was fast: it keeps them


def test_costs_are_per_unit_of_work() -> None:
    choice, _ = _choice()
    choice.pick()
    choice.record(2, 0.4, work=10.0)  # a long sentence: 0.04 s per second of audio
    choice.record(1, 0.1, work=1.0)  # a short one, slower per second
    assert choice.pick() == 2


def test_one_thread_takes_over_only_when_clearly_faster() -> None:
    choice, clock = _choice()
    assert _run(choice, clock, 10, {2: 0.034, 1: 0.030})[2:].count(2) == 8  # a draw: both
    busy = _run(choice, clock, 10, {2: 0.034 * 2, 1: 0.030})
    assert busy.count(1) >= 8  # (the 16th pick tries two threads again)


def test_one_thread_wanted_is_one_thread_always() -> None:
    clock = Clock()
    assert _run(ThreadChoice(1, clock=clock, calls=LiveCalls()), clock, 20, {1: 0.02}) == [1] * 20


class Call:
    pass


def test_beside_another_live_call_every_step_runs_on_one_thread() -> None:
    clock, calls = Clock(), LiveCalls()
    choice = ThreadChoice(2, clock=clock, calls=calls)
    first, second = Call(), Call()
    calls.enter(first)
    assert _run(choice, clock, 10, {2: 0.015, 1: 0.025}).count(2) >= 8  # alone: fastest
    calls.enter(second)
    assert _run(choice, clock, 40, {2: 0.015, 1: 0.025}) == [1] * 40  # crowded: one
    calls.leave(second)
    clock.now += ThreadChoice.QUIET_S * 2
    assert _run(choice, clock, 10, {2: 0.015, 1: 0.025}).count(2) >= 8  # alone again
