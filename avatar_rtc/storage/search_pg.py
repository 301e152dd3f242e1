"""Full-text search over turns on PostgreSQL: a generated tsvector column, a GIN index.

It matches what the SQLite FTS5 index finds: every word of the query must appear in
the user's or the agent's text, each as a word prefix, ignoring case and accents
("cafe" finds "Café"), best matches first. Three things make it so:
- words are runs of letters and digits on both sides: ASCII punctuation becomes a
  space before PostgreSQL's parser sees the text, or it would keep "3.5",
  "example.com" or "step-by-step" as single tokens that no word of a query matches;
- a text search configuration of its own, ``avatar_search``: ``simple`` (no
  stemming, no stop words, like FTS5's unicode61 tokenizer) behind ``unaccent``;
- query words go in quoted, with ``:*``, so nothing a user types is tsquery syntax.
"""

from __future__ import annotations

import peewee

from .db import execute
from .errors import StorageError
from .models import Turn

CONFIG = "avatar_search"
COLUMN = "search"
INDEX = "turn_search"

# ASCII punctuation and symbols (as \x escapes: no quote or % in the DDL).
_PUNCTUATION = r"[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]+"


def _document(column: str) -> str:
    text = f"regexp_replace({column}, '{_PUNCTUATION}', ' ', 'g')"
    return f"to_tsvector('{CONFIG}', {text})"


_CONFIG_DDL = (
    f"CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = pg_catalog.simple)",
    # word, numword: tokens with non-ASCII letters, the only ones with accents.
    f"ALTER TEXT SEARCH CONFIGURATION {CONFIG} ALTER MAPPING FOR word, numword "
    "WITH unaccent, simple",
)
# Two tsvectors joined: || shifts the second one's positions, so a phrase never
# spans the user's and the agent's text.
_COLUMN_DDL = (
    f"ALTER TABLE turn ADD COLUMN {COLUMN} tsvector GENERATED ALWAYS AS "
    f"({_document('user_text')} || {_document('reply_text')}) STORED",
    f"CREATE INDEX {INDEX} ON turn USING gin ({COLUMN})",
)


def create_index(db: peewee.Database) -> None:
    """The configuration, the column and its index: a migration, run once."""
    try:
        # A trusted extension (PostgreSQL 13+): the database's owner may create it.
        execute(db, "CREATE EXTENSION IF NOT EXISTS unaccent")
    except peewee.DatabaseError as exc:
        raise StorageError(
            f"full-text search needs PostgreSQL's unaccent extension ({exc}); install "
            "the server's contrib modules (Debian: postgresql), or have a superuser run "
            "CREATE EXTENSION unaccent in this database once"
        ) from None
    for statement in (*_CONFIG_DDL, *_COLUMN_DDL):
        execute(db, statement)


def tsquery(terms: list[str]) -> str:
    """Every term, quoted, as a prefix; all must match. Terms hold letters and digits."""
    return " & ".join(f"'{term}':*" for term in terms)


def search(terms: list[str], limit: int) -> list[Turn]:
    columns = ", ".join(f'turn."{field.column_name}"' for field in Turn._meta.sorted_fields)
    sql = (
        f"SELECT {columns} FROM turn, to_tsquery('{CONFIG}', %s) AS query "
        f"WHERE turn.{COLUMN} @@ query "
        f"ORDER BY ts_rank(turn.{COLUMN}, query) DESC, turn.started_at DESC, turn.seq DESC "
        "LIMIT %s"
    )
    return list(Turn.raw(sql, tsquery(terms), limit))
