"""Audio media plumbing for WebRTC calls: resampling, inbound reading, paced outbound."""

from .inbound import InboundAudio, PcmSink
from .outbound import FRAME_SAMPLES, SAMPLE_RATE, PacedAudioTrack
from .playout import PlayoutChunk
from .resample import FrameResampler, Pcm, PcmResampler, resample_pcm

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "FrameResampler",
    "InboundAudio",
    "PacedAudioTrack",
    "Pcm",
    "PcmResampler",
    "PcmSink",
    "PlayoutChunk",
    "resample_pcm",
]
