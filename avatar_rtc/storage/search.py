"""Full-text search over turns: FTS5 on SQLite when available, a tsvector column on
PostgreSQL (search_pg), LIKE otherwise. All three find the same turns: those holding
every word of the query, a word being a run of letters and digits."""

from __future__ import annotations

import re

import peewee

from . import search_pg
from .db import execute, fetch_one, is_postgres, is_sqlite
from .errors import StorageError
from .models import Turn

FTS_TABLE = "turn_fts"

# External-content FTS5 table over turn(user_text, reply_text), keyed by
# turn.seq and kept in sync by triggers, so every writer stays consistent.
_FTS_DDL = (
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(
        user_text, reply_text, content='turn', content_rowid='seq',
        tokenize='unicode61 remove_diacritics 2')""",
    f"""CREATE TRIGGER IF NOT EXISTS turn_fts_ai AFTER INSERT ON turn BEGIN
        INSERT INTO {FTS_TABLE}(rowid, user_text, reply_text)
        VALUES (new.seq, new.user_text, new.reply_text);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS turn_fts_ad AFTER DELETE ON turn BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, user_text, reply_text)
        VALUES ('delete', old.seq, old.user_text, old.reply_text);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS turn_fts_au AFTER UPDATE OF user_text, reply_text
    ON turn BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, user_text, reply_text)
        VALUES ('delete', old.seq, old.user_text, old.reply_text);
        INSERT INTO {FTS_TABLE}(rowid, user_text, reply_text)
        VALUES (new.seq, new.user_text, new.reply_text);
    END""",
)


def fts5_available(db: peewee.Database) -> bool:
    """Whether this SQLite build can create FTS5 tables (probed, not guessed)."""
    if not is_sqlite(db):
        return False
    try:
        execute(db, "CREATE VIRTUAL TABLE temp._fts5_probe USING fts5(x)")
    except peewee.OperationalError:
        return False
    execute(db, "DROP TABLE temp._fts5_probe")
    return True


def has_fts_table(db: peewee.Database) -> bool:
    if not is_sqlite(db):
        return False
    row = fetch_one(
        db,
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        (FTS_TABLE,),
    )
    return row is not None


def ensure_fts(db: peewee.Database) -> bool:
    """Create the FTS index where possible; returns whether search uses it.

    Runs at every startup, so a database first created without FTS5 gains
    the index (rebuilt from existing turns) once FTS5 is available.
    """
    present = has_fts_table(db)
    if not fts5_available(db):
        if present:
            # The sync triggers would make every turn write fail.
            raise StorageError(
                f"database has an FTS5 index ({FTS_TABLE}) but this SQLite build "
                "lacks FTS5; use a Python/SQLite with FTS5 enabled"
            )
        return False
    with db.atomic():
        for statement in _FTS_DDL:
            execute(db, statement)
        if not present:
            execute(db, f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
    return True


def has_index(db: peewee.Database) -> bool:
    """Whether search uses a full-text index (else LIKE)."""
    # On PostgreSQL a migration made it; ensure_fts keeps SQLite's.
    return is_postgres(db) or has_fts_table(db)


def terms(query: str) -> list[str]:
    # Letters and digits only (no underscore): what FTS5's unicode61 tokenizer and
    # PostgreSQL's parser (after search_pg drops punctuation) call a word.
    return re.findall(r"[^\W_]+", query)


def search(db: peewee.Database, query: str, limit: int, indexed: bool) -> list[Turn]:
    words = terms(query)
    if not words:
        return []
    if is_postgres(db):
        return search_pg.search(words, limit)
    return fts_search(words, limit) if indexed else like_search(words, limit)


def fts_search(words: list[str], limit: int) -> list[Turn]:
    # Each word quoted (no FTS syntax from user input) and prefix-matched; all must match.
    match = " ".join(f'"{word}"*' for word in words)
    sql = (
        f"SELECT turn.* FROM {FTS_TABLE} JOIN turn ON turn.seq = {FTS_TABLE}.rowid "
        f"WHERE {FTS_TABLE} MATCH ? ORDER BY {FTS_TABLE}.rank, turn.started_at DESC LIMIT ?"
    )
    return list(Turn.raw(sql, match, limit))


def like_search(words: list[str], limit: int) -> list[Turn]:
    condition: peewee.ColumnBase | None = None
    for word in words:
        # contains() escapes LIKE wildcards and is case-insensitive on every backend.
        clause = Turn.user_text.contains(word) | Turn.reply_text.contains(word)
        condition = clause if condition is None else condition & clause
    rows = (
        Turn.select()
        .where(condition)
        .order_by(Turn.started_at.desc(), Turn.seq.desc())
        .limit(limit)
    )
    return list(rows)
