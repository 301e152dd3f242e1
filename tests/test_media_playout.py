"""PlayoutQueue on an injected clock: the offline replay plays it in 20 ms slots."""

from __future__ import annotations

import numpy as np

from media import PlayoutQueue
from media.resample import Pcm


def test_the_queue_plays_20_ms_slots_on_an_injected_clock() -> None:
    now = [0.0]
    playout = PlayoutQueue(lambda: now[0])
    started: list[float | None] = []
    playout.on_chunk_started = lambda chunk: started.append(chunk.started_at)
    frames: list[tuple[float, Pcm]] = []

    def play_slot(at: float) -> None:
        pcm = playout.next_frame(at)
        if pcm.any():
            frames.append((at, pcm))

    now[0] = 0.005
    first = playout.enqueue(np.full(1500, 1000, np.int16))
    play_slot(0.0)  # began before the audio was queued: silence
    assert first.sent_samples == 0 and not frames
    play_slot(0.02)
    assert first.sent_samples == 960 and started == [0.02]
    playout.pause()
    play_slot(0.04)
    assert first.sent_samples == 960 and playout.is_playing
    playout.resume()
    second = playout.enqueue(np.full(960, 2000, np.int16))
    play_slot(0.06)  # the end of one chunk and the start of the next
    assert first.done and first.finished_at == 0.06 and second.sent_samples == 420
    assert started == [0.02, 0.06]
    dropped = playout.clear()
    assert dropped == [second] and second.cleared and not playout.is_playing
    play_slot(0.08)
    assert [at for at, _ in frames] == [0.02, 0.06]


def test_a_closed_queue_clears_what_it_is_given() -> None:
    playout = PlayoutQueue(lambda: 0.0)
    queued = playout.enqueue(np.full(960, 1000, np.int16))
    playout.close()
    late = playout.enqueue(np.full(960, 1000, np.int16))
    assert playout.closed and queued.cleared and late.cleared and late.done
    assert not playout.next_frame(1.0).any()
