"""Mono PCM to an Ogg/Opus file, written as it comes."""

from __future__ import annotations

from pathlib import Path

import av

from .resample import Pcm


class OpusWriter:
    """A mono int16 stream to an Ogg/Opus file (PyAV, libopus). Not thread-safe."""

    def __init__(self, path: Path, rate: int, bitrate_kbps: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rate = rate
        self.samples = 0
        # Each Ogg page goes to disk when complete (about once a second): if the process
        # dies, the file still plays up to there.
        self._container = av.open(str(path), "w", format="ogg",
                                  container_options={"flush_packets": "1"})
        try:
            # Complexity 5 instead of libopus's 10: half the CPU, and at a recording's
            # bitrate the difference is hard to hear.
            stream = self._container.add_stream("libopus", rate=rate,
                                                options={"compression_level": "5"})
            stream.layout = "mono"
            stream.bit_rate = bitrate_kbps * 1000
            self._stream = stream
        except Exception:
            self._container.close()
            raise
        self._closed = False

    def write(self, pcm: Pcm) -> None:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.samples
        self.samples += pcm.size
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and write the trailer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
