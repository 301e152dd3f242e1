"""peewee models. Only the storage package sees these.

Models resolve their database per thread: each Store binds its own database
on its own worker thread, so two open stores never share a binding, and a
query issued from any other thread (the event loop included) fails loudly.
"""

from __future__ import annotations

import threading
from typing import Any

import peewee


class _ThreadBoundDatabase(peewee.DatabaseProxy):
    __slots__ = ()
    _local = threading.local()

    @property
    def obj(self) -> peewee.Database | None:
        db: peewee.Database | None = getattr(self._local, "db", None)
        return db

    @obj.setter
    def obj(self, value: peewee.Database | None) -> None:
        self._local.db = value

    def __setattr__(self, attr: str, value: Any) -> None:
        # Proxy restricts attributes to its own __slots__; ours has none.
        object.__setattr__(self, attr, value)

    def __getattr__(self, attr: str) -> Any:
        db = self.obj
        if db is None:
            raise peewee.InterfaceError(
                f"no database bound on thread {threading.current_thread().name!r}; "
                "storage work must run on the Store's worker thread"
            )
        return getattr(db, attr)


THREAD_DB = _ThreadBoundDatabase()


def bind_thread(db: peewee.Database | None) -> None:
    """Make the models on the calling thread use ``db``."""
    THREAD_DB.initialize(db)


class BaseModel(peewee.Model):
    class Meta:
        database = THREAD_DB
        legacy_table_names = False


class SchemaVersion(BaseModel):
    # One row per applied migration: the current version is the max.
    version = peewee.IntegerField(primary_key=True)
    applied_at = peewee.TextField()

    class Meta:
        table_name = "schema_version"


class Call(BaseModel):
    id = peewee.CharField(max_length=36, primary_key=True)
    started_at = peewee.TextField(index=True)
    ended_at = peewee.TextField(null=True)
    end_reason = peewee.CharField(max_length=64, null=True)
    user_agent = peewee.TextField(null=True)
    remote_addr = peewee.CharField(max_length=255, null=True)
    # Deliberately not a foreign key: history keeps the id after a profile is deleted.
    voice_profile_id = peewee.CharField(max_length=36, null=True, index=True)
    settings = peewee.TextField(default="{}")
    user_audio_path = peewee.TextField(null=True)
    agent_audio_path = peewee.TextField(null=True)
    recording_deleted = peewee.BooleanField(default=False)
    recording_bytes = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "call"


class Turn(BaseModel):
    # An integer key keeps FTS5 rowids stable (SQLite may renumber implicit
    # rowids on VACUUM); the UUID is the public id.
    seq = peewee.AutoField()
    id = peewee.CharField(max_length=36, unique=True)
    call = peewee.ForeignKeyField(
        Call, column_name="call_id", on_delete="CASCADE", backref="+", lazy_load=False
    )
    call_id: str  # accessor peewee derives from `call`; declared for the type checker
    turn_index = peewee.IntegerField()
    started_at = peewee.TextField()
    ended_at = peewee.TextField(null=True)
    user_text = peewee.TextField(default="")
    reply_text = peewee.TextField(default="")
    spoken_text = peewee.TextField(default="")
    interrupted = peewee.BooleanField(default=False)
    cut_off = peewee.BooleanField(default=False)
    timings = peewee.TextField(default="{}")
    user_audio_start_ms = peewee.BigIntegerField(null=True)
    user_audio_end_ms = peewee.BigIntegerField(null=True)
    agent_audio_start_ms = peewee.BigIntegerField(null=True)
    agent_audio_end_ms = peewee.BigIntegerField(null=True)
    typed = peewee.BooleanField(default=False)  # schema v3
    tool_calls = peewee.TextField(default="[]")  # schema v3: a JSON list
    # Whisper's code for the language the user spoke ("" unknown); schema v4.
    language = peewee.CharField(max_length=16, default="")

    class Meta:
        table_name = "turn"
        indexes = ((("call", "turn_index"), False),)


class VoiceProfile(BaseModel):
    id = peewee.CharField(max_length=36, primary_key=True)
    name = peewee.CharField(max_length=255, index=True)
    description = peewee.TextField(default="")
    reference_audio_path = peewee.TextField(null=True)
    reference_text = peewee.TextField(default="")
    backend = peewee.CharField(max_length=64)
    params = peewee.TextField(default="{}")
    created_at = peewee.TextField()
    updated_at = peewee.TextField()

    class Meta:
        table_name = "voice_profile"


# Creation order: parents before children.
TABLES: tuple[type[BaseModel], ...] = (Call, Turn, VoiceProfile)
