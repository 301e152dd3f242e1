"""ThreadChoice: the thread count of a model's next step follows measured step costs."""

from __future__ import annotations

from avatar_rtc.backends.threads import ThreadChoice


def _run(choice: ThreadChoice, steps: int, cost: dict[int, float]) -> list[int]:
    """Takes `steps` steps, each costing cost[threads] seconds; the counts picked."""
    picked = []
    for _ in range(steps):
        threads = choice.pick()
        choice.record(threads, cost[threads])
        picked.append(threads)
    return picked


def test_it_measures_both_counts_then_keeps_the_faster() -> None:
    choice = ThreadChoice(2)
    picked = _run(choice, 40, {2: 0.015, 1: 0.025})  # an idle machine
    assert picked[:2] == [2, 1]
    assert picked[2:].count(2) > 30
    assert 1 in picked[2:]  # tried again now and then


def test_a_count_whose_steps_stall_loses_though_most_of_them_are_fast() -> None:
    choice = ThreadChoice(2)
    for _ in range(4):  # beside a busy process: 2 threads mostly fast, now and then stuck
        choice.record(2, 0.02)
    choice.record(2, 0.4)
    for _ in range(5):
        choice.record(1, 0.025)
    assert choice.pick() == 1  # mean 0.096 s against 0.025 s


def test_it_follows_the_load_both_ways() -> None:
    choice = ThreadChoice(2)
    busy = _run(choice, 100, {2: 0.15, 1: 0.03})
    assert busy[-50:].count(1) >= 45
    idle = _run(choice, 100, {2: 0.015, 1: 0.025})
    assert idle[-50:].count(2) >= 45  # the stale costs of the busy time aged out
    assert idle.index(2) < 2 * ThreadChoice.EXPLORE_EVERY + 2


def test_costs_are_per_unit_of_work() -> None:
    choice = ThreadChoice(2)
    choice.record(2, 0.4, work=10.0)  # a long sentence: 0.04 s per second of audio
    choice.record(1, 0.1, work=1.0)  # a short one, slower per second
    assert choice.pick() == 2


def test_one_thread_wanted_is_one_thread_always() -> None:
    choice = ThreadChoice(1)
    assert _run(choice, 20, {1: 0.02}) == [1] * 20


def test_trying_the_other_count_keeps_the_costs_of_the_one_in_use() -> None:
    choice = ThreadChoice(2)
    _run(choice, ThreadChoice.EXPLORE_EVERY - 1, {2: 0.015, 1: 0.025})
    assert choice.pick() == 1  # the exploring step
    choice.record(1, 0.025)
    assert choice.pick() == 2
    assert len(choice._costs[2]) == ThreadChoice.SAMPLES  # not cleared by the detour


def test_one_thread_takes_over_only_when_clearly_faster() -> None:
    choice = ThreadChoice(2)
    assert _run(choice, 10, {2: 0.034, 1: 0.030})[2:].count(2) == 8  # a draw: both
    busy = _run(choice, 10, {2: 0.034 * 2, 1: 0.030})
    assert busy.count(1) >= 8  # (the 16th pick tries two threads again)
