"""torchaudio without its compiled extension when that was built for another torch.

No torchaudio release matches every torch: on torch 2.13 the newest is 2.11.1. Its
Python code works there; its compiled extension (`torchaudio/lib/_torchaudio.so`,
loaded by `import torchaudio`) is linked against torch 2.11's C++ symbols, and
loading it into torch 2.13 fails, so `import torchaudio` fails, and with it
CosyVoice's frontend, F5-TTS and Vocos, which import it.

What those inference paths use of torchaudio is plain torch: `transforms.Resample`,
`compliance.kaldi.fbank`, `transforms.MelSpectrogram` and `Spectrogram`. torchaudio
supports running without its extension (a build without it, or without the files,
reports `_IS_TORCHAUDIO_EXT_AVAILABLE = False` and its functions fall back to Python or
say what they lack). `without_mismatched_extension` gives torchaudio that state when,
and only when, its version's major.minor differs from torch's: its `_extension` module
is provided here, saying that no extension is available, before torchaudio imports
it. torchaudio's files stay as installed, and a matching torchaudio loads as usual.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from importlib import metadata
from typing import Any

EXTENSION = "torchaudio._extension"


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def mismatched() -> bool:
    """Whether the installed torchaudio was built for another torch (major.minor)."""
    try:
        return _minor(metadata.version("torchaudio")) != _minor(metadata.version("torch"))
    except metadata.PackageNotFoundError:
        return False


def _no_extension(message: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{func.__name__}: {message}")
        return unavailable
    return decorator


def without_mismatched_extension() -> bool:
    """Before torchaudio is imported: keeps it from loading a mismatched extension.
    True when it did (torchaudio then runs on its Python code alone)."""
    if "torchaudio" in sys.modules or EXTENSION in sys.modules or not mismatched():
        return False
    reason = (f"torchaudio {metadata.version('torchaudio')}'s compiled extension does not "
              f"match torch {metadata.version('torch')}, so it is not loaded")
    stand_in = types.ModuleType(EXTENSION, reason)
    # The names torchaudio reads from its `_extension` package.
    stand_in._IS_TORCHAUDIO_EXT_AVAILABLE = False  # type: ignore[attr-defined]
    stand_in._IS_ALIGN_AVAILABLE = False  # type: ignore[attr-defined]
    stand_in.fail_if_no_align = _no_extension(reason)  # type: ignore[attr-defined]
    stand_in._load_lib = lambda lib: False  # type: ignore[attr-defined]
    stand_in._check_cuda_version = lambda: None  # type: ignore[attr-defined]
    sys.modules[EXTENSION] = stand_in
    return True
