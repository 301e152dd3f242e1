"""The shared model thread: urgent streams first, gated streams step aside; models take
turns on the CPU."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from avatar_rtc.backends.cpu_turns import CpuTurns
from avatar_rtc.backends.model_thread import DUE_LEAD_S, ModelThread, Policy
from avatar_rtc.backends.priority import Priority, UserWait

URGENT = Priority(urgent=True)


def _counter(name: str, n: int, log: list[str], delay_s: float = 0.002):
    def produce(stop: threading.Event) -> Iterator[str]:
        for i in range(n):
            time.sleep(delay_s)
            log.append(f"{name}{i}")
            yield f"{name}{i}"

    return produce


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the condition changes on another thread
            await asyncio.sleep(0.001)


async def _drain(thread: ModelThread, produce, **kwargs) -> list[str]:  # type: ignore[no-untyped-def]
    return [item async for item in thread.iterate(produce, **kwargs)]


async def test_items_arrive_in_order_and_errors_propagate() -> None:
    thread = ModelThread("t")
    try:
        assert await _drain(thread, _counter("a", 3, [])) == ["a0", "a1", "a2"]

        def broken(stop: threading.Event) -> Iterator[str]:
            yield "x"
            raise ValueError("model exploded")

        with pytest.raises(ValueError, match="model exploded"):
            await _drain(thread, broken)
        assert await thread.run(lambda a, b: a + b, 2, 3) == 5
    finally:
        thread.close()


async def test_a_new_stream_overtakes_a_long_one_until_it_is_no_longer_urgent() -> None:
    thread = ModelThread("t", urgent_items=3)
    log: list[str] = []
    try:
        long = asyncio.create_task(_drain(thread, _counter("L", 40, log)))
        await _until(lambda: len(log) >= 10)
        new = asyncio.create_task(_drain(thread, _counter("N", 6, log)))
        await asyncio.gather(long, new)
    finally:
        thread.close()
    first_new = log.index("N0")
    # N's first three items (its urgent phase) run back to back, before any more of L.
    assert log[first_new : first_new + 3] == ["N0", "N1", "N2"]
    # Then the two take turns: neither starves.
    after = log[first_new + 3 : first_new + 9]
    assert {x[0] for x in after[0::2]} != {x[0] for x in after[1::2]}, after
    assert log.index("N5") < log.index("L39")


async def test_an_urgent_priority_makes_a_whole_stream_urgent() -> None:
    thread = ModelThread("t")
    log: list[str] = []
    try:
        # Long enough to outlast a slow event loop on a loaded machine.
        long = asyncio.create_task(_drain(thread, _counter("L", 150, log)))
        await _until(lambda: len(log) >= 5)
        first = asyncio.create_task(_drain(thread, _counter("U", 5, log), priority=URGENT))
        await asyncio.gather(long, first)
    finally:
        thread.close()
    start = log.index("U0")
    assert log[start : start + 5] == ["U0", "U1", "U2", "U3", "U4"]
    assert log.index("L149") > start + 4


async def test_first_in_first_out_runs_each_stream_to_its_end_whatever_its_priority() -> None:
    thread = ModelThread("t", policy=Policy.FIRST_IN_FIRST_OUT, urgent_items=3)
    log: list[str] = []
    try:
        long = asyncio.create_task(_drain(thread, _counter("L", 20, log)))
        await _until(lambda: len(log) >= 3)
        first = asyncio.create_task(_drain(thread, _counter("U", 3, log), priority=URGENT))
        await asyncio.gather(long, first)
    finally:
        thread.close()
    assert log == [f"L{i}" for i in range(20)] + ["U0", "U1", "U2"]


@contextlib.asynccontextmanager
async def _blocked_thread() -> AsyncIterator[tuple[ModelThread, threading.Event]]:
    """A thread held in one step until the event is set: streams queue up behind it."""
    thread = ModelThread("t")
    busy, go_on = threading.Event(), threading.Event()

    def blocker(stop: threading.Event) -> Iterator[str]:
        busy.set()
        go_on.wait(5)
        yield "B"

    running = asyncio.create_task(_drain(thread, blocker))
    try:
        await _until(busy.is_set)
        yield thread, go_on
        await running
    finally:
        go_on.set()
        thread.close()


async def test_urgent_work_of_the_turn_waiting_longest_goes_first() -> None:
    """A turn's later stage (its first tokens) goes before the earlier stage (the
    transcript) of a turn that began to wait after it, though queued later."""
    log: list[str] = []
    async with _blocked_thread() as (thread, go_on):

        async def turn(name: str, since: float) -> list[str]:
            return await _drain(thread, _counter(name, 3, log),
                                priority=Priority(urgent=True, wait=UserWait(since)))

        later = asyncio.create_task(turn("later", time.monotonic()))
        await asyncio.sleep(0.05)  # queued first
        earlier = asyncio.create_task(turn("earlier", time.monotonic() - 1.0))
        await asyncio.sleep(0.05)
        go_on.set()
        await asyncio.gather(later, earlier)
    assert log == ["earlier0", "earlier1", "earlier2", "later0", "later1", "later2"], log


async def test_a_playing_reply_due_soon_turns_urgent_and_one_due_later_waits() -> None:
    """A reply whose queued audio runs out within DUE_LEAD_S goes before a turn that
    began to wait after that moment, and before other replies; read when ranked, so
    the conversation can move `due` while the stream waits."""
    log: list[str] = []
    async with _blocked_thread() as (thread, go_on):

        async def stream(name: str, wait: UserWait | None = None) -> list[str]:
            # Steps of 50 ms: the reader keeps up even on a loaded machine (a reply
            # ahead of its reader is not urgent: the next test).
            produce = _counter(name, 3, log, delay_s=0.05)
            if wait is None:
                return await _drain(thread, produce)
            return await _drain(thread, produce,
                                priority=Priority(urgent=wait.due is None, wait=wait))

        now = time.monotonic()
        soon = UserWait(now - 5, due=now + 10 * DUE_LEAD_S)
        tasks = [asyncio.create_task(stream("plain")),
                 asyncio.create_task(stream("later", UserWait(now - 5, due=now + 10))),
                 asyncio.create_task(stream("soon", soon)),
                 asyncio.create_task(stream("asked", UserWait(now)))]
        await asyncio.sleep(0.05)  # all queued behind the blocker
        soon.due = now + DUE_LEAD_S / 2  # its audio played out faster than it seemed
        go_on.set()
        await asyncio.gather(*tasks)
    assert log[:6] == ["soon0", "soon1", "soon2", "asked0", "asked1", "asked2"], log
    assert sorted(log[6:]) == ["later0", "later1", "later2", "plain0", "plain1", "plain2"]


async def test_a_reply_due_soon_but_ahead_of_its_reader_is_not_urgent() -> None:
    """Tokens the conversation has not read yet (it waits for the last chunk's audio)
    must not take the CPU from a waiting turn, however soon the reply is due."""
    thread = ModelThread("t")
    log: list[str] = []
    now = time.monotonic()
    try:
        ahead = thread.iterate(_counter("A", 30, log, delay_s=0.01),
                               priority=Priority(wait=UserWait(now - 5, due=now)))
        assert await anext(ahead) == "A0"  # then the reader is busy elsewhere
        asked = await _drain(thread, _counter("U", 3, log),
                             priority=Priority(urgent=True, wait=UserWait(time.monotonic())))
        assert asked == ["U0", "U1", "U2"]
        before = log[: log.index("U2")]
        assert "A8" not in before, log  # unread, A fell back in line (it was first)
        await ahead.aclose()
    finally:
        thread.close()


async def test_a_gated_stream_waits_without_blocking_the_others() -> None:
    thread = ModelThread("t")
    gate_open = threading.Event()
    log: list[str] = []
    try:
        gated = asyncio.create_task(
            _drain(thread, _counter("G", 3, log), ready=gate_open.is_set))
        other = await _drain(thread, _counter("O", 3, log))
        assert other == ["O0", "O1", "O2"] and not any(x.startswith("G") for x in log)
        gate_open.set()
        assert await gated == ["G0", "G1", "G2"]
    finally:
        thread.close()


async def test_leaving_early_stops_and_closes_the_generator_on_the_model_thread() -> None:
    thread = ModelThread("t")
    closed_on: list[str] = []
    produced: list[int] = []

    def produce(stop: threading.Event) -> Iterator[int]:
        try:
            for i in range(1000):
                time.sleep(0.002)
                produced.append(i)
                yield i
        finally:
            closed_on.append(threading.current_thread().name)

    try:
        async for item in thread.iterate(produce):
            if item == 2:
                break
        for _ in range(500):  # a busy machine may take a while to get to it
            if closed_on:
                break
            await asyncio.sleep(0.01)
        assert closed_on == ["avatar-t"]
        # Generation stopped, not just ignored: nothing more is produced after the close
        # (how far it ran ahead of the reader depends on how busy the machine is).
        stopped_at = len(produced)
        await asyncio.sleep(0.1)
        assert len(produced) == stopped_at < 1000
        # The thread serves the next stream.
        assert await _drain(thread, _counter("n", 2, [])) == ["n0", "n1"]
    finally:
        thread.close()


async def test_close_fails_queued_streams_instead_of_hanging() -> None:
    thread = ModelThread("t")
    never = threading.Event()
    waiting = asyncio.create_task(_drain(thread, _counter("w", 2, []), ready=never.is_set))
    await asyncio.sleep(0.05)
    thread.close()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(waiting, 2)
    with pytest.raises(RuntimeError, match="closed"):
        await _drain(thread, _counter("x", 1, []))


def _tracked(name: str, n: int, log: list[str], running: list[int],
             delay_s: float = 0.003):  # type: ignore[no-untyped-def]
    """Items that note how many models were computing at once while they were made."""
    def produce(stop: threading.Event) -> Iterator[str]:
        for i in range(n):
            running[0] += 1
            running[1] = max(running[1], running[0])
            time.sleep(delay_s)  # releases the GIL, as a model's C code does
            running[0] -= 1
            log.append(f"{name}{i}")
            yield f"{name}{i}"

    return produce


@contextlib.asynccontextmanager
async def _models(*names: str, cpu: CpuTurns | None) -> AsyncIterator[list[ModelThread]]:
    threads = [ModelThread(name, cpu=cpu) for name in names]
    try:
        yield threads
    finally:
        for thread in threads:
            thread.close()


@pytest.mark.parametrize("taking_turns", [True, False])
async def test_models_taking_turns_never_compute_at_once(taking_turns: bool) -> None:
    running = [0, 0]  # now, most at once
    async with _models("m0", "m1", "m2", cpu=CpuTurns() if taking_turns else None) as threads:
        await asyncio.gather(*(_drain(w, _tracked(w.name, 30, [], running))
                               for w in threads))
    # Without turns the three threads overlap; with them, never (the check can fail).
    assert (running[1] == 1) == taking_turns, running


async def test_an_urgent_stream_of_one_model_goes_before_another_models_work() -> None:
    log: list[str] = []
    running = [0, 0]
    async with _models("llm", "tts", cpu=CpuTurns()) as (llm, tts):
        story = asyncio.create_task(_drain(llm, _tracked("S", 150, log, running)))
        await _until(lambda: len(log) >= 5)
        before = len(log)
        first_words = await _drain(tts, _tracked("F", 10, log, running), priority=URGENT)
        await story
    assert first_words == [f"F{i}" for i in range(10)]
    start, end = log.index("F0"), log.index("F9")
    # Before the first: the step the story was in, and any it took before the other
    # thread asked for the CPU. Then none: the urgent model keeps the CPU between items.
    assert sum(item.startswith("S") for item in log[before:start]) <= 3, log
    assert log[start : end + 1] == first_words, log
    assert end < log.index("S149")


async def test_background_work_waits_for_the_other_models_and_never_blocks_them() -> None:
    """A model waiting for its turn with background work (a partial transcript) must not
    hold back the urgent stream that reaches it meanwhile (a final transcript)."""
    log: list[str] = []
    running = [0, 0]
    async with _models("llm", "stt", cpu=CpuTurns()) as (llm, stt):
        reply = asyncio.create_task(_drain(llm, _tracked("R", 80, log, running)))
        await _until(lambda: len(log) >= 3)
        partial = asyncio.create_task(_drain(stt, _tracked("P", 1, log, running),
                                             background=True))
        await asyncio.sleep(0.02)  # the STT thread now waits for a turn, ranked background
        final = await _drain(stt, _tracked("F", 1, log, running), priority=URGENT)
        assert final == ["F0"]
        assert not reply.done()  # the final transcript did not wait for the whole reply
        await asyncio.gather(reply, partial)
    assert log.index("F0") < log.index("P0")  # background last
    assert running[1] == 1
