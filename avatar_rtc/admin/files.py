"""Files under the data folder: safe resolution of stored paths, atomic writes, removal.

Everything here touches the disk: call it through asyncio.to_thread.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from avatar_rtc.errors import AvatarError


class OutsideDataDir(AvatarError):
    """A stored path leads out of the data folder; it is never served or deleted."""


def resolve_inside(root: Path, relative: str) -> Path:
    """`relative` (as stored: relative to `root`) resolved; symlinks are followed
    first, so neither `..` nor a link can lead out. An absolute path must lie inside too."""
    base = root.resolve()
    path = (base / relative).resolve()
    if path == base or not path.is_relative_to(base):
        raise OutsideDataDir(f"stored path {relative!r} points outside the data folder")
    return path


def existing_file(root: Path, relative: str) -> Path | None:
    path = resolve_inside(root, relative)
    return path if path.is_file() else None


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


def remove_tree(root: Path, relative: str) -> None:
    """Deletes the folder `root/relative`, which must be inside root; missing is fine."""
    path = resolve_inside(root, relative)
    if path.is_dir():
        shutil.rmtree(path)


def remove_file(root: Path, relative: str) -> None:
    """Deletes one stored file inside root (never a folder); missing is fine."""
    path = resolve_inside(root, relative)
    if path.is_file():
        path.unlink()
