"""Receive-side latency of aiortc's audio path.

aiortc's audio receiver holds packets in a jitter buffer and releases a frame only
after `prefetch` later frames have arrived (4 = 80 ms). On a server whose inbound
audio feeds VAD and STT rather than a listener's ear, smoothness buys nothing and
every frame held is latency. aiortc has no per-peer option, so this is process-wide.
"""

from __future__ import annotations

from typing import Any

import aiortc.rtcrtpreceiver as receiver
from aiortc.jitterbuffer import JitterBuffer

AIORTC_DEFAULT_PREFETCH = 4


def set_audio_prefetch(frames: int) -> None:
    """Frames an audio frame waits for before release (aiortc's default is 4)."""
    if frames < 1:
        raise ValueError("prefetch must be at least 1 frame")
    if frames == AIORTC_DEFAULT_PREFETCH:
        receiver.JitterBuffer = JitterBuffer  # type: ignore[attr-defined]
        return

    class AudioJitterBuffer(JitterBuffer):
        def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False,
                     **kwargs: Any) -> None:
            super().__init__(capacity, prefetch if is_video else frames, is_video, **kwargs)

    receiver.JitterBuffer = AudioJitterBuffer  # type: ignore[attr-defined]
