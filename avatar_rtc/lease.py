"""A cluster-wide lease: of the servers sharing one database, one at a time does a job
(the retention sweep), so nothing is done twice.

PostgreSQL: a session advisory lock on the store's connection, which every server of
the cluster reaches. SQLite: only servers on one host can share it, so an exclusive
``flock`` on a file in the data folder they share does. Either way the lease is tried,
never waited for: a server that does not get it skips this round.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from avatar_rtc.storage import Store

_held_here: set[tuple[int, str]] = set()  # (store, lease) taken by this process


def lock_key(name: str) -> int:
    """A stable advisory lock key for ``name``: the same on every server."""
    return zlib.crc32(f"avatar_rtc:{name}".encode())


def _try_flock(path: Path) -> int | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@asynccontextmanager
async def lease(store: Store, folder: Path, name: str) -> AsyncIterator[bool]:
    """Yields True when this server holds the lease ``name`` until the block ends."""
    if store.shared:
        # A session's advisory locks stack: the same connection would get it twice.
        mine = (id(store), name)
        if mine in _held_here:
            yield False
            return
        _held_here.add(mine)
        key = lock_key(name)
        try:
            held = await store.try_lock(key)
            try:
                yield held
            finally:
                if held and not store.closed:
                    await store.unlock(key)
        finally:
            _held_here.discard(mine)
        return
    fd = await asyncio.to_thread(_try_flock, folder / f".{name}.lock")
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the flock
