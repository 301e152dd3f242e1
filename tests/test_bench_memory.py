"""The bench's memory figures: RSS counts a file page once per mapping (llama.cpp maps
the model once per context), PSS counts it once."""

from __future__ import annotations

import importlib.util
import mmap
import os
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tool", ROOT / "tools" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_file_mapped_twice_counts_twice_in_rss_and_once_in_pss(tmp_path: Path) -> None:
    stats = _bench().ProcessStats(os.getpid())
    size = 32 * 1024 * 1024
    model = tmp_path / "weights.bin"
    model.write_bytes(os.urandom(size))
    rss0, pss0 = stats.rss_mb(), stats.pss_mb()
    assert 0 < pss0 <= rss0
    with model.open("rb") as file:
        maps = [mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) for _ in range(2)]
    try:
        for mapped in maps:  # every page resident in both mappings
            sum(mapped[i] for i in range(0, size, mmap.PAGESIZE))
        rss_growth, pss_growth = stats.rss_mb() - rss0, stats.pss_mb() - pss0
    finally:
        for mapped in maps:
            mapped.close()
    assert 56 <= rss_growth <= 72, rss_growth  # 2 x 32 MB
    assert 24 <= pss_growth <= 40, pss_growth  # 32 MB: the pages are shared
