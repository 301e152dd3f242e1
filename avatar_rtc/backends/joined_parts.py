"""One model file shipped in pieces by several packages, joined once and verified.

The pieces are located without importing their packages (importing runs a package's
code; an unknown publisher's code is never run), joined in order into a temporary file
while the SHA-256 is computed, and put in place only when the size and hash are the
pinned ones: a tampered or half-written file is never loaded. A stamp beside the file
holds the size, mtime and hash it was verified with, so a later start checks size and
mtime instead of hashing hundreds of megabytes again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from avatar_rtc.backends.base import BackendError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Piece:
    """A file inside an installed package: `module` (its import name), `path` in it."""

    module: str
    path: str
    distribution: str  # the name to pip install


@dataclass(frozen=True)
class JoinedFile:
    """A file joined from `pieces`, pinned by its size and SHA-256."""

    name: str  # the joined file's name in the cache folder
    pieces: tuple[Piece, ...]
    size: int
    sha256: str
    install_hint: str  # how to get the pieces (said in the errors)
    backend: str = "llm"


def locate(piece: Piece, hint: str, backend: str) -> Path:
    """The piece's path in its installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(piece.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(backend, f"the {piece.distribution} package is not installed; "
                                    f"{hint}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / piece.path
    if not path.is_file():
        raise BackendError(backend, f"{piece.distribution} has no {piece.path} "
                                    f"(looked in {folder}); {hint}")
    return path


def _stamp_of(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_ok(target: Path, spec: JoinedFile) -> bool:
    try:
        stamp = json.loads(_stamp_of(target).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("sha256") == spec.sha256
            and stamp.get("size") == spec.size == stat.st_size
            and stamp.get("mtime_ns") == stat.st_mtime_ns)


def joined_file(spec: JoinedFile, cache_dir: Path) -> Path:
    """The joined, verified file in `cache_dir`: made once, then reused while its size
    and mtime match the stamp. Blocks for seconds the first time: call it from a
    model-loading thread, never on the event loop."""
    target = cache_dir / spec.name
    if _stamp_ok(target, spec):
        return target
    paths = [locate(p, spec.install_hint, spec.backend) for p in spec.pieces]
    total = sum(p.stat().st_size for p in paths)
    if total != spec.size:
        raise BackendError(spec.backend, f"{spec.name}: the pieces hold {total:,} bytes, "
                                         f"not the {spec.size:,} pinned; {spec.install_hint}")
    started = time.perf_counter()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cache_dir / f".{spec.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            digest = _join(paths, partial)
            if digest != spec.sha256:
                raise BackendError(
                    spec.backend, f"{spec.name}: the joined pieces' SHA-256 is {digest}, "
                                  f"not the pinned {spec.sha256}; refusing to load it. "
                                  f"{spec.install_hint}")
            partial.replace(target)  # atomic: a half-written model is never loaded
        finally:
            partial.unlink(missing_ok=True)
        stat = target.stat()
        stamp = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        stamp_partial = partial.with_suffix(".stamp")
        stamp_partial.write_text(json.dumps(stamp))
        stamp_partial.replace(_stamp_of(target))
    except OSError as exc:
        raise BackendError(spec.backend, f"cannot write {spec.name} to {cache_dir}: {exc}; "
                                         "set storage.data_dir to a writable folder") from exc
    log.info("joined and verified %s in %.1fs", target, time.perf_counter() - started)
    return target


def _join(paths: Sequence[Path], target: Path) -> str:
    """Copies `paths` in order into `target`, returning the SHA-256 of what was written."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for path in paths:
            with path.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()
