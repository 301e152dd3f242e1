"""Persistence for calls, turns and voice profiles (peewee, SQLite by default).

Entry point: ``store = await Store.open(url)``; see store.Store.
"""

from .db import default_url
from .errors import SchemaTooNewError, StorageError, StoreClosedError
from .records import (
    CallRecord,
    TurnRecord,
    VoiceProfileRecord,
    canonical_id,
    new_id,
    utc_now,
)
from .store import Store

__all__ = [
    "CallRecord",
    "SchemaTooNewError",
    "StorageError",
    "Store",
    "StoreClosedError",
    "TurnRecord",
    "VoiceProfileRecord",
    "canonical_id",
    "default_url",
    "new_id",
    "utc_now",
]
