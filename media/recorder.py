"""Call recording: each side's PCM to a mono Ogg/Opus file, both on one timeline.

Taps hand PCM over on the event loop; a worker thread places it on the timeline
(media.aligner) and encodes it (media.opus), so the loop never encodes or touches the
disk. Both files start at the recorder's ``t0`` (``start()``), so the same offset in
each means the same moment; at ``close()`` both tracks are padded to the same end, so
they have equal lengths.

``offset_ms`` turns a monotonic time into a place in the files: the time since t0
while the call runs, and once closed the exact place in a track, from where each
chunk that arrived around that time was put.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .aligner import Aligner
from .opus import OpusWriter
from .resample import Pcm

logger = logging.getLogger(__name__)

USER_FILE = "user.ogg"
AGENT_FILE = "agent.ogg"
RECORDER_NICE = 10  # still ~10% of a busy core: enough to keep up with a call


def _lower_priority() -> None:
    """Encoding is buffered (the queue holds ~30 s): the recorder yields the cores to
    the models the callers are waiting for. On Linux a thread has its own nice value;
    elsewhere this changes nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RECORDER_NICE)


class TrackRecorder:
    """One side of the call: an Aligner feeding an OpusWriter. Worker thread only."""

    def __init__(self, name: str, path: Path, rate: int, t0: float, bitrate_kbps: int,
                 *, tolerance_s: float, window_s: float) -> None:
        self.name = name
        self.path = path
        self.aligner = Aligner(rate, t0, tolerance_s=tolerance_s, window_s=window_s)
        self.error: str | None = None
        self._samples = 0
        self._writer: OpusWriter | None = None
        try:
            self._writer = OpusWriter(path, rate, bitrate_kbps)
        except Exception as exc:
            self._fail("open", exc)

    def push(self, pcm: Pcm, at: float, captured_at: float | None) -> None:
        self.aligner.push(pcm, at, captured_at)

    def pull(self, now: float) -> None:
        self._write(self.aligner.pull(now))

    def finish(self, end_at: float) -> None:
        self._write(self.aligner.finish(end_at))
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as exc:
                self._fail("finalize", exc)

    @property
    def samples(self) -> int:
        return self._samples

    def abort(self) -> None:
        """Close the file as it is (the worker hit a bug): what was written stays playable."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as exc:
                self._fail("finalize", exc)
            self._writer = None

    def _write(self, pieces: list[Pcm]) -> None:
        if self._writer is None or not pieces:
            return  # (no writer: failed earlier; the timeline is kept, the audio dropped)
        # One frame per batch: fewer trips through PyAV.
        pcm = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        try:
            self._writer.write(pcm)
            self._samples += pcm.size
        except Exception as exc:
            self._fail("encode", exc)
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    def _fail(self, what: str, exc: Exception) -> None:
        self.error = self.error or f"{self.name} track: {what} failed: {type(exc).__name__}: {exc}"
        logger.error("recorder %s: %s", self.path, self.error)


@dataclass(frozen=True)
class RecordingResult:
    user_path: Path | None
    agent_path: Path | None
    bytes: int  # both files together
    duration_s: float  # of each track (they end together)
    error: str | None = None
    dropped_chunks: int = 0  # PCM chunks refused because the worker fell behind


@dataclass(frozen=True)
class _Stop:
    at: float


_Item = tuple[int, Pcm, float, float | None] | _Stop

_USER, _AGENT = 0, 1
_TRACKS = ("user", "agent")


class CallRecorder:
    """Records both sides of one call into ``directory``/{user,agent}.ogg.

    ``user_audio`` and ``agent_audio`` are taps (for ``InboundAudio.add_tap`` and
    ``PacedAudioTrack.add_tap``): cheap, non-blocking, called on the event loop.
    """

    def __init__(
        self,
        directory: Path,
        *,
        bitrate_kbps: int = 24,
        user_rate: int = 16000,
        agent_rate: int = 48000,
        clock: Callable[[], float] = time.monotonic,
        tolerance_s: float = 0.12,
        window_s: float = 1.0,
        max_queued_chunks: int = 3000,  # ~30 s of both sides in 20 ms frames
        batch_s: float = 0.25,  # the worker wakes this often
    ) -> None:
        self.directory = directory
        self.user_path = directory / USER_FILE
        self.agent_path = directory / AGENT_FILE
        self.bitrate_kbps = bitrate_kbps
        self.rates = (user_rate, agent_rate)
        self._clock = clock
        self._tolerance_s = tolerance_s
        self._window_s = window_s
        self._batch_s = batch_s
        self._closing = threading.Event()  # wakes the worker from its batch wait
        self._queue: queue.Queue[_Item] = queue.Queue(max_queued_chunks)
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._tracks: list[TrackRecorder] = []
        self._worker_error: str | None = None
        self.dropped_chunks = 0
        self.result: RecordingResult | None = None

    @property
    def t0(self) -> float:
        if self._t0 is None:
            raise RuntimeError("recorder not started")
        return self._t0

    @property
    def started(self) -> bool:
        return self._t0 is not None

    def start(self) -> None:
        """Fix t0 now and start the worker (it creates the files). Idempotent."""
        if self._t0 is not None:
            return
        self._t0 = self._clock()
        self._thread = threading.Thread(
            target=self._work, name=f"recorder-{self.directory.name}", daemon=True
        )
        self._thread.start()

    def offset_ms(self, at: float, track: str | None = None) -> int:
        """Milliseconds into the recording of the monotonic time ``at``.

        With ``track`` ("user" or "agent") and once closed, the exact place in that
        file (see Aligner.position_at); otherwise the time since t0.
        """
        if track is not None and self.result is not None and len(self._tracks) == 2:
            aligner = self._tracks[_TRACKS.index(track)].aligner
            return round(aligner.position_at(at) * 1000 / aligner.rate)
        return max(0, round((at - self.t0) * 1000))

    def user_audio(self, pcm: Pcm, captured_at: float | None = None) -> None:
        self._put(_USER, pcm, captured_at)

    def agent_audio(self, pcm: Pcm) -> None:
        self._put(_AGENT, pcm, None)

    def _put(self, track: int, pcm: Pcm, captured_at: float | None) -> None:
        if self._closed or self._t0 is None:
            return
        try:
            # A copy: the producer may reuse its buffer.
            self._queue.put_nowait((track, np.array(pcm, dtype=np.int16).reshape(-1),
                                    self._clock(), captured_at))
        except queue.Full:
            # The arrival times of later chunks still say how much is missing.
            self.dropped_chunks += 1
            if self.dropped_chunks & (self.dropped_chunks - 1) == 0:
                logger.warning("recorder %s is behind: %d chunks dropped",
                               self.directory, self.dropped_chunks)

    def close(self, at: float | None = None) -> RecordingResult:
        """Finalize both files (blocking: call it off the event loop). Idempotent.

        Both tracks end at ``at`` (default: now). Returns the files and their size.
        """
        end_at = self._clock() if at is None else at
        with self._lock:
            if self.result is not None:
                return self.result
            self._closed = True
            thread = self._thread
            if thread is None:
                self.result = RecordingResult(None, None, 0, 0.0, "recorder never started")
                return self.result
            self._closing.set()
            while thread.is_alive():
                try:
                    self._queue.put(_Stop(end_at), timeout=0.5)
                    break
                except queue.Full:
                    continue
            thread.join()
            self.result = self._summary()
            return self.result

    async def aclose(self) -> RecordingResult:
        """``close()`` on a worker thread, ending the tracks at the moment of the call."""
        end_at = self._clock()
        return await asyncio.to_thread(self.close, end_at)

    def _summary(self) -> RecordingResult:
        size = 0
        for path in (self.user_path, self.agent_path):
            with contextlib.suppress(OSError):
                size += path.stat().st_size
        errors = [t.error for t in self._tracks if t.error]
        if self._worker_error:
            errors.append(self._worker_error)
        duration = 0.0
        if self._tracks:
            duration = max(t.samples / t.aligner.rate for t in self._tracks)
        return RecordingResult(
            user_path=self.user_path if self.user_path.exists() else None,
            agent_path=self.agent_path if self.agent_path.exists() else None,
            bytes=size,
            duration_s=duration,
            error="; ".join(errors) or None,
            dropped_chunks=self.dropped_chunks,
        )

    # ---- worker thread ---------------------------------------------------------

    def _work(self) -> None:
        _lower_priority()
        try:
            self._record()
        except Exception as exc:  # a bug here must not leave close() waiting
            logger.exception("recorder %s failed", self.directory)
            self._worker_error = f"recorder failed: {type(exc).__name__}: {exc}"
            for recorder in self._tracks:
                recorder.abort()
            while not isinstance(self._queue.get(), _Stop):
                pass

    def _record(self) -> None:
        t0 = self.t0
        for name, path, rate in (("user", self.user_path, self.rates[_USER]),
                                 ("agent", self.agent_path, self.rates[_AGENT])):
            self._tracks.append(TrackRecorder(
                name, path, rate, t0, self.bitrate_kbps,
                tolerance_s=self._tolerance_s, window_s=self._window_s,
            ))
        while True:
            # A batch per wake, not a wake per 20 ms chunk: 4.4% of a core per call
            # instead of 5.8% (four recorders fed in real time), and the GIL is held
            # less often while the calls' media wait for it.
            self._closing.wait(self._batch_s)
            # Taken before draining: every chunk that arrived by `now` is pushed below.
            now = self._clock()
            items: list[_Item] = []
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop: _Stop | None = None
            for entry in items:
                if isinstance(entry, _Stop):
                    stop = entry
                else:
                    track, pcm, at, captured_at = entry
                    self._tracks[track].push(pcm, at, captured_at)
            if stop is not None:
                for recorder in self._tracks:
                    recorder.finish(stop.at)
                return
            for recorder in self._tracks:
                recorder.pull(now)
