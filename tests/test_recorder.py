"""Call recorder: timeline alignment (late start, gaps, bursts, drift) and real Ogg/Opus files."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from media.aligner import Aligner
from media.opus import OpusWriter
from media.recorder import RECORDER_NICE, CallRecorder

pytestmark = pytest.mark.timeout(60)

RATE = 16000
CHUNK = 320  # 20 ms at 16 kHz, what InboundAudio delivers per frame
T0 = 1000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, now: float) -> None:
        with self._lock:
            self.now = now


def marker(k: int) -> npt.NDArray[np.int16]:
    # Loud and unique per chunk, so its place in the output can be found.
    return np.full(CHUNK, 1000 + k, dtype=np.int16)


def run(aligner: Aligner, arrivals: list[tuple[npt.NDArray[np.int16], float]],
        end_at: float) -> list[npt.NDArray[np.int16]]:
    """Feeds chunks at their arrival times, pulling as a worker would."""
    pieces: list[npt.NDArray[np.int16]] = []
    for pcm, at in arrivals:
        aligner.push(pcm, at)
        pieces.extend(aligner.pull(at))
    pieces.extend(aligner.finish(end_at))
    return pieces


def marker_positions(pieces: list[npt.NDArray[np.int16]]) -> dict[int, int]:
    """Marker k -> sample index where its (possibly shortened) chunk ends."""
    found: dict[int, int] = {}
    position = 0
    for piece in pieces:
        position += piece.size
        if piece.size and piece[0] >= 1000:
            found[int(piece[0]) - 1000] = position
    return found


def errors_ms(found: dict[int, int], truth: dict[int, float]) -> npt.NDArray[np.float64]:
    """Placement error of each marker: where it ended vs. when it really ended."""
    return np.array([(found[k] / RATE - truth[k]) * 1000 for k in sorted(found)])


# --- the timeline, as pure logic ------------------------------------------------


def test_a_late_first_chunk_is_preceded_by_exactly_the_missing_silence() -> None:
    aligner = Aligner(RATE, T0)
    arrivals = [(marker(k), T0 + 1.5 + 0.02 * (k + 1)) for k in range(50)]
    pieces = run(aligner, arrivals, end_at=T0 + 2.5)
    found = marker_positions(pieces)
    # Chunk 0 ends 1.52 s after t0; every later one follows it with nothing between.
    assert found[0] == round(1.52 * RATE)
    assert all(found[k] - found[k - 1] == CHUNK for k in range(1, 50))
    assert sum(p.size for p in pieces) == round(2.5 * RATE)
    assert aligner.padded == round(1.5 * RATE)


def test_jitter_and_bursts_of_a_continuous_stream_insert_nothing_over_a_long_call() -> None:
    rng = np.random.default_rng(1)
    aligner = Aligner(RATE, T0)
    count = 10 * 60 * 50  # ten minutes of 20 ms frames
    latency = 0.05
    ends = T0 + latency + 0.02 * (np.arange(count) + 1)
    jitter = rng.uniform(0, 0.08, count)
    # The event loop now and then stalls 300 ms and then drains the backlog at once.
    for start in rng.choice(count - 20, 40, replace=False):
        jitter[start : start + 15] = np.maximum(
            jitter[start : start + 15], ends[start + 15] - ends[start : start + 15]
        )
    arrivals_at = np.maximum.accumulate(ends + jitter)
    pieces = run(aligner, [(marker(k), float(arrivals_at[k])) for k in range(count)],
                 end_at=float(arrivals_at[-1]))
    found = marker_positions(pieces)
    # Silence only before the first chunk (the latency) and after the last: none between.
    assert all(found[k] - found[k - 1] == CHUNK for k in range(1, count))
    assert aligner.dropped == 0
    lead = found[0] - CHUNK
    assert latency * RATE <= lead <= (latency + 0.04) * RATE
    assert sum(p.size for p in pieces) == aligner._target(float(arrivals_at[-1]))


def test_a_network_gap_is_padded_and_later_audio_lands_where_it_was_heard() -> None:
    aligner = Aligner(RATE, T0)
    truth: dict[int, float] = {}
    arrivals = []
    for k in range(500):
        if 100 <= k < 200:  # two seconds lost in the network
            continue
        end = 0.02 * (k + 1)
        truth[k] = end
        arrivals.append((marker(k), T0 + end))
    pieces = run(aligner, arrivals, end_at=T0 + 10.0)
    found = marker_positions(pieces)
    err = errors_ms(found, truth)
    assert np.abs(err).max() <= 1.0, err
    assert abs(aligner.padded - 2 * RATE) <= 1
    assert sum(p.size for p in pieces) == 10 * RATE


def test_a_stall_that_delivers_its_backlog_late_is_not_padded() -> None:
    aligner = Aligner(RATE, T0)
    arrivals = []
    truth: dict[int, float] = {}
    for k in range(300):
        end = 0.02 * (k + 1)
        truth[k] = end
        # Frames 100..149 are held up (1 s) and arrive all at once with frame 150.
        at = T0 + (0.02 * 151 if 100 <= k < 150 else end)
        arrivals.append((marker(k), at))
    pieces = run(aligner, arrivals, end_at=T0 + 6.0)
    found = marker_positions(pieces)
    err = errors_ms(found, truth)
    assert aligner.padded == 0
    assert all(found[k] - found[k - 1] == CHUNK for k in range(1, 300))
    assert np.abs(err).max() <= 1.0


def test_a_slow_catch_up_is_padded_by_arrival_but_not_by_capture_time() -> None:
    """A sender whose loop stalled 500 ms, then catches up at only 1.1x real time: for
    more than the window, every arrival looks late."""
    chunks: list[tuple[npt.NDArray[np.int16], float, float]] = []
    t = T0
    for k in range(400):
        captured = T0 + 0.02 * (k + 1)
        t = captured + 0.5 if k == 100 else max(captured, t + 0.02 / 1.1)
        chunks.append((marker(k), t, captured))

    by_arrival = Aligner(RATE, T0)
    run(by_arrival, [(pcm, at) for pcm, at, _ in chunks], end_at=T0 + 9.0)
    assert by_arrival.padded > 0.2 * RATE  # silence in the middle of the speech

    by_capture = Aligner(RATE, T0)
    pieces: list[npt.NDArray[np.int16]] = []
    for pcm, at, captured in chunks:
        by_capture.push(pcm, at, captured)
        pieces.extend(by_capture.pull(at))
    pieces.extend(by_capture.finish(T0 + 9.0))
    found = marker_positions(pieces)
    assert by_capture.padded == round(1.0 * RATE)  # only the tail, after the last chunk
    assert all(found[k] - found[k - 1] == CHUNK for k in range(1, 400))
    assert found[0] == CHUNK
    # A moment still maps to where its chunk landed: by arrival.
    assert by_capture.position_at(chunks[150][1] + 1e-6) == 151 * CHUNK


def test_a_moment_maps_to_where_its_chunk_landed_even_in_a_burst() -> None:
    aligner = Aligner(RATE, T0)
    arrivals = []
    for k in range(300):
        end = 0.02 * (k + 1)
        at = T0 + (0.02 * 151 if 100 <= k < 150 else end)  # a 1 s stall, then a burst
        arrivals.append((marker(k), at))
    run(aligner, arrivals, end_at=T0 + 6.0)
    # Chunk 20 has not arrived yet: the track has reached its start.
    assert aligner.position_at(T0 + 0.02 * 20 + 1e-4) == 20 * CHUNK
    # Just before the burst, the track is where the stall began, not 1 s later as the
    # clock alone would say; just after it, the whole burst is in.
    assert aligner.position_at(T0 + 0.02 * 151 - 1e-6) == 100 * CHUNK
    assert aligner.position_at(T0 + 0.02 * 151 + 1e-6) == 151 * CHUNK
    # After the last chunk, the tail is silence up to the end, in real time.
    assert aligner.position_at(T0 + 7.0) == 7 * RATE

    lossy = Aligner(RATE, T0)
    run(lossy, [(marker(k), T0 + 0.02 * (k + 1)) for k in range(300) if not 100 <= k < 200],
        end_at=T0 + 6.0)
    # Inside a network gap (padded with silence), time runs on.
    assert lossy.position_at(T0 + 3.0) == 3 * RATE
    assert lossy.position_at(T0 + 4.02 + 1e-6) == 201 * CHUNK


@pytest.mark.parametrize("ratio", [0.998, 1.002])
def test_a_drifting_sender_clock_stays_within_tolerance(ratio: float) -> None:
    """A sender clock 0.2 % slow (gaps appear) or fast (audio piles up) for 10 minutes."""
    aligner = Aligner(RATE, T0, tolerance_s=0.12)
    truth: dict[int, float] = {}
    arrivals = []
    for k in range(30000):
        end = 0.02 * (k + 1) / ratio  # the sender's 20 ms on our clock
        truth[k] = end
        # Speech with pauses: one second in four is quiet (room noise).
        pcm = marker(k) if (k // 50) % 4 else np.full(CHUNK, 20, dtype=np.int16)
        arrivals.append((pcm, T0 + end))
    pieces = run(aligner, arrivals, end_at=T0 + 0.02 * 30000 / ratio)
    err = errors_ms(marker_positions(pieces), truth)
    # Without correction the error would reach 1.2 s. Late audio gets silence inserted
    # once 120 ms behind; early audio loses quiet samples once 40 ms ahead (plus what
    # piles up over 3 s of speech, which is never cut).
    assert err.min() >= -120 - 20 and err.max() <= 40 + 10, (err.min(), err.max())
    if ratio < 1:
        assert aligner.padded > 0 and aligner.dropped == 0
    else:
        assert aligner.dropped > 0 and aligner.padded == 0


def test_loud_audio_is_never_cut_to_catch_up() -> None:
    aligner = Aligner(RATE, T0)
    # Five seconds of speech delivered within one second: nothing quiet to trim.
    arrivals = [(marker(k), T0 + 0.004 * (k + 1)) for k in range(250)]
    pieces = run(aligner, arrivals, end_at=T0 + 5.0)
    assert aligner.dropped == 0
    assert sorted(marker_positions(pieces)) == list(range(250))


# --- real files -----------------------------------------------------------------


def tone(seconds: float, rate: int, hz: float = 440.0, amp: float = 0.3
         ) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(amp * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def decode(path: Path) -> tuple[str, int, npt.NDArray[np.float64]]:
    """(codec, rate, mono samples in [-1, 1]) as any player would decode the file."""
    with av.open(str(path)) as container:
        assert container.format.name == "ogg"
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        assert stream.codec_context.channels == 1
        parts = []
        rate = 0
        for frame in container.decode(stream):
            rate = frame.sample_rate
            data = frame.to_ndarray().astype(np.float64)
            if frame.format.name.startswith("s16"):
                data /= 32768.0
            parts.append(data.reshape(-1))
    return codec, rate, np.concatenate(parts)


def envelope(samples: npt.NDArray[np.float64], rate: int, window_s: float = 0.02
             ) -> npt.NDArray[np.float64]:
    size = round(window_s * rate)
    usable = samples[: samples.size - samples.size % size]
    rms: npt.NDArray[np.float64] = np.sqrt((usable.reshape(-1, size) ** 2).mean(axis=1))
    return rms


def loud_spans(samples: npt.NDArray[np.float64], rate: int) -> list[tuple[float, float]]:
    """(start_s, end_s) of every stretch louder than -30 dBFS, at 20 ms resolution."""
    loud = envelope(samples, rate) > 0.03
    spans = []
    start: int | None = None
    for i, flag in enumerate([*loud, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            spans.append((start * 0.02, i * 0.02))
            start = None
    return spans


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    yield FakeClock()


def feed(recorder: CallRecorder, clock: FakeClock, side: str, pcm: npt.NDArray[np.int16],
         rate: int, start_s: float, frame: int) -> None:
    """Hands `pcm` over in frames as they would arrive, starting `start_s` after t0."""
    tap = recorder.user_audio if side == "user" else recorder.agent_audio
    for offset in range(0, pcm.size, frame):
        piece = pcm[offset : offset + frame]
        clock.set(T0 + start_s + (offset + piece.size) / rate)
        tap(piece)


def test_both_files_are_ogg_opus_of_equal_length_with_audio_where_it_was_heard(
    tmp_path: Path, clock: FakeClock
) -> None:
    recorder = CallRecorder(tmp_path / "call", bitrate_kbps=24, clock=clock)
    recorder.start()
    assert recorder.t0 == T0
    # The user speaks 1.0-2.0 s, then the network drops 1.5 s, then 4.0-5.0 s.
    feed(recorder, clock, "user", tone(1.0, 16000), 16000, 1.0, 320)
    feed(recorder, clock, "user", tone(1.0, 16000, hz=300), 16000, 4.0, 320)
    # The agent's track starts late (ICE), silent, then speaks 2.5-3.5 s.
    feed(recorder, clock, "agent", np.zeros(48000, np.int16), 48000, 0.5, 960)
    feed(recorder, clock, "agent", tone(1.0, 48000, hz=600), 48000, 2.5, 960)
    assert recorder.offset_ms(T0 + 4.0, "user") == 4000  # running: the time since t0
    result = recorder.close(at=T0 + 6.0)

    assert result.error is None and result.dropped_chunks == 0
    # Closed: the place in each track where that moment's audio is.
    assert recorder.offset_ms(T0 + 1.5, "user") == 1500
    assert recorder.offset_ms(T0 + 2.5, "agent") == 2500
    assert result.user_path == tmp_path / "call" / "user.ogg"
    assert result.agent_path == tmp_path / "call" / "agent.ogg"
    assert result.bytes == result.user_path.stat().st_size + result.agent_path.stat().st_size
    assert result.duration_s == pytest.approx(6.0, abs=0.001)
    for path, expected in ((result.user_path, [(1.0, 2.0), (4.0, 5.0)]),
                           (result.agent_path, [(2.5, 3.5)])):
        codec, rate, samples = decode(path)
        assert codec == "opus"
        assert samples.size / rate == pytest.approx(6.0, abs=0.001)
        spans = loud_spans(samples, rate)
        assert len(spans) == len(expected), spans
        for (start, end), (want_start, want_end) in zip(spans, expected, strict=True):
            assert abs(start - want_start) <= 0.04 and abs(end - want_end) <= 0.04, spans
    # 24 kb/s for 6 s per track, plus Ogg overhead, well under PCM's 96 kB/s per second.
    assert 6 * 24000 / 8 * 0.5 < result.bytes < 2 * 6 * 24000 / 8 * 1.5


def test_close_is_idempotent_and_the_offsets_count_from_t0(
    tmp_path: Path, clock: FakeClock
) -> None:
    recorder = CallRecorder(tmp_path / "c", clock=clock)
    recorder.start()
    recorder.start()  # a second start changes nothing
    assert recorder.offset_ms(T0 + 1.2344) == 1234
    assert recorder.offset_ms(T0 - 5) == 0
    feed(recorder, clock, "user", tone(0.5, 16000), 16000, 0.0, 320)
    first = recorder.close(at=T0 + 1.0)
    before = first.user_path.read_bytes() if first.user_path else b""
    clock.set(T0 + 9.0)
    recorder.user_audio(tone(0.5, 16000))  # after close: ignored
    second = recorder.close(at=T0 + 9.0)
    assert second is first
    assert first.user_path is not None and first.user_path.read_bytes() == before
    assert decode(first.user_path)[2].size / 48000 == pytest.approx(1.0, abs=0.001)


async def test_aclose_mid_reply_finalizes_playable_files_with_everything_queued(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The peer vanishes while the agent speaks: close comes with audio still queued."""
    recorder = CallRecorder(tmp_path / "c", clock=clock)
    recorder.start()
    feed(recorder, clock, "user", tone(1.0, 16000), 16000, 0.0, 320)
    # Three seconds of the reply go out, and the call ends that very moment, before
    # the worker has placed any of it (its window still holds the last second).
    feed(recorder, clock, "agent", tone(3.0, 48000, hz=500), 48000, 1.0, 960)
    result = await recorder.aclose()
    assert result.error is None and result.agent_path is not None
    assert result.user_path is not None
    _, rate, agent = decode(result.agent_path)
    _, _, user = decode(result.user_path)
    assert agent.size / rate == pytest.approx(4.0, abs=0.001)
    assert user.size == agent.size
    assert loud_spans(agent, rate) == [pytest.approx((1.0, 4.0), abs=0.04)]
    assert loud_spans(user, rate) == [pytest.approx((0.0, 1.0), abs=0.04)]
    assert await recorder.aclose() is result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_recorder_thread_yields_the_cores_to_the_models(tmp_path: Path) -> None:
    def nice(native_id: int) -> int:
        stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[16])

    own = nice(threading.get_native_id())
    recorder = CallRecorder(tmp_path / "c")
    recorder.start()
    try:
        thread = recorder._thread
        assert thread is not None and thread.native_id is not None
        for _ in range(200):  # the thread lowers itself as it starts
            if nice(thread.native_id) != own:
                break
            threading.Event().wait(0.01)
        assert nice(thread.native_id) == max(own, RECORDER_NICE)
        assert nice(threading.get_native_id()) == own  # the rest of the process keeps it
    finally:
        recorder.close()


def test_the_worker_encodes_a_batch_per_wake_not_a_frame_per_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    original = OpusWriter.write

    def counted(self: OpusWriter, pcm: npt.NDArray[np.int16]) -> None:
        writes.append(pcm.size)
        original(self, pcm)

    monkeypatch.setattr(OpusWriter, "write", counted)
    recorder = CallRecorder(tmp_path / "c", batch_s=0.25, window_s=0.2)
    recorder.start()
    chunk = tone(0.02, 16000)
    for _ in range(50):  # one second of 20 ms chunks, in real time
        recorder.user_audio(chunk)
        threading.Event().wait(0.02)
    result = recorder.close()
    assert result.error is None and result.user_path is not None
    user_writes = len(writes) // 2  # the agent track (silence) is written as often
    assert 2 <= user_writes <= 8  # a write per wake (~4 a second), not 50
    assert sum(writes) >= 50 * chunk.size


def test_a_recorder_closed_before_it_started_reports_no_files(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "c")
    result = recorder.close()
    assert result.user_path is None and result.agent_path is None and result.bytes == 0
    assert not (tmp_path / "c").exists()


def test_an_unwritable_directory_is_reported_and_close_does_not_hang(
    tmp_path: Path, clock: FakeClock
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    recorder = CallRecorder(blocker / "call", clock=clock)
    recorder.start()
    feed(recorder, clock, "user", tone(0.2, 16000), 16000, 0.0, 320)
    result = recorder.close(at=T0 + 1.0)
    assert result.error is not None and "user track: open failed" in result.error
    assert result.bytes == 0 and result.user_path is None


def test_a_full_queue_drops_chunks_but_keeps_the_timeline(
    tmp_path: Path, clock: FakeClock
) -> None:
    recorder = CallRecorder(tmp_path / "c", clock=clock, max_queued_chunks=10)
    gate = threading.Event()
    original = recorder._record

    def slow_start() -> None:
        gate.wait(10)  # the worker is stuck (e.g. a slow disk)
        original()

    recorder._record = slow_start  # type: ignore[method-assign]
    recorder.start()
    feed(recorder, clock, "user", tone(1.0, 16000), 16000, 0.0, 320)  # 50 chunks
    assert recorder.dropped_chunks == 40
    gate.set()
    result = recorder.close(at=T0 + 2.0)
    assert result.dropped_chunks == 40 and result.error is None
    assert result.user_path is not None
    _, rate, samples = decode(result.user_path)
    assert samples.size / rate == pytest.approx(2.0, abs=0.001)
    # The ten chunks kept are the first 200 ms, at the start where they belong.
    spans = loud_spans(samples, rate)
    assert len(spans) == 1 and spans[0][0] <= 0.02 and abs(spans[0][1] - 0.2) <= 0.04


async def test_taps_are_cheap_on_the_event_loop(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "c")
    recorder.start()
    frame = tone(0.02, 48000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(500):  # ten seconds of agent frames
        recorder.agent_audio(frame)
    assert loop.time() - started < 0.5
    await recorder.aclose()


def test_a_file_never_closed_still_plays_up_to_its_last_page(tmp_path: Path) -> None:
    """The process dies mid-call: pages already written are on disk and decode."""
    writer = OpusWriter(tmp_path / "crash.ogg", 16000, 24)
    for _ in range(250):  # five seconds
        writer.write(tone(0.02, 16000))
    snapshot = tmp_path / "as-left.ogg"
    snapshot.write_bytes((tmp_path / "crash.ogg").read_bytes())  # no close, no trailer
    codec, rate, samples = decode(snapshot)
    assert codec == "opus" and samples.size / rate >= 3.5
    writer.close()
