"""Audio media plumbing for WebRTC calls: resampling, inbound reading, paced outbound."""

from .inbound import InboundAudio, PcmSink
from .outbound import PacedAudioTrack
from .playout import FRAME_SAMPLES, SAMPLE_RATE, PlayoutChunk, PlayoutQueue
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
    "PlayoutQueue",
    "resample_pcm",
]
