"""Admission control: refuse a new call (503) before it can starve the running ones.

Two limits: the configured number of concurrent calls, and the GPU's memory. A GPU
near full would make the next model allocation fail in the middle of some call, so
above `gpu.max_memory_fraction` used, new calls wait. The memory probe is injected:
NVML (nvidia-ml-py) when installed, else torch's `mem_get_info` when torch is already
loaded, else none (CPU only: memory never refuses).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

GIB = 1024**3


@dataclass(frozen=True)
class GpuMemory:
    free: int
    total: int

    @property
    def used_fraction(self) -> float:
        return 1.0 - self.free / self.total if self.total > 0 else 0.0


MemoryProbe = Callable[[], GpuMemory]


@dataclass(frozen=True)
class Refusal:
    reason: str
    retry_after_s: int = 5


def nvml_probe(index: int = 0) -> MemoryProbe | None:
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # not installed, no driver, no such GPU
        return None
    nvml: Any = pynvml

    def probe() -> GpuMemory:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        return GpuMemory(free=int(info.free), total=int(info.total))

    return probe


def torch_probe(index: int = 0) -> MemoryProbe | None:
    torch: Any = sys.modules.get("torch")  # importing torch just to ask would cost seconds
    if torch is None or not torch.cuda.is_available() or index >= torch.cuda.device_count():
        return None

    def probe() -> GpuMemory:
        free, total = torch.cuda.mem_get_info(index)
        return GpuMemory(free=int(free), total=int(total))

    return probe


def default_probe(index: int = 0) -> MemoryProbe | None:
    return nvml_probe(index) or torch_probe(index)


class Admission:
    def __init__(self, *, max_calls: int = 0, max_memory_fraction: float = 1.0,
                 probe: MemoryProbe | None = None, device: str = "gpu") -> None:
        self.max_calls = max_calls  # 0: no limit here
        self.max_memory_fraction = max_memory_fraction
        self.probe = probe
        self.device = device

    def memory(self) -> GpuMemory | None:
        if self.probe is None:
            return None
        try:
            return self.probe()
        except Exception as exc:  # a broken probe must not take the service down
            log.warning("GPU memory probe failed: %s", exc)
            return None

    def check(self, active_calls: int) -> Refusal | None:
        """None when a new call may start, else why not."""
        if self.max_calls and active_calls >= self.max_calls:
            return Refusal(f"server full: {active_calls} of {self.max_calls} calls")
        if self.max_memory_fraction >= 1.0:
            return None
        memory = self.memory()
        if memory is not None and memory.used_fraction > self.max_memory_fraction:
            return Refusal(
                f"{self.device} memory {memory.used_fraction:.0%} used "
                f"({(memory.total - memory.free) / GIB:.1f} of {memory.total / GIB:.1f} GiB), "
                f"above gpu.max_memory_fraction {self.max_memory_fraction:.0%}",
                retry_after_s=10,
            )
        return None

    def describe(self) -> str:
        """One line for /health; empty without a GPU."""
        memory = self.memory()
        if memory is None:
            return ""
        return (f"{self.device}: {(memory.total - memory.free) / GIB:.1f} of "
                f"{memory.total / GIB:.1f} GiB used (admits below "
                f"{self.max_memory_fraction:.0%})")
