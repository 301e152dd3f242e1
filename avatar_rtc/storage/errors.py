"""Exceptions raised by the storage layer."""

from __future__ import annotations

from avatar_rtc.errors import AvatarError


class StorageError(AvatarError):
    """Base class for storage failures the caller can act on."""


class SchemaTooNewError(StorageError):
    """The database was migrated by a newer release than this code."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"database schema is at version {found}, but this code only knows up to "
            f"version {known}; upgrade avatar_rtc or point it at another database"
        )
        self.found = found
        self.known = known


class StoreClosedError(StorageError):
    """The Store was used after close()."""
