"""The index schema, as named migrations: `MIGRATIONS[i]` takes a file from `user_version == i` to `i + 1`.

Design choices:
- Tables: `document` (one row), `chapters`, `chunks`, `notes`, the tag index `tags` + `chunk_tags`, and
  `summaries` (rolling / chapter / book).
- Full text: `chunks_fts(text, gist, tags)` (FTS5, porter) with rowid = chunk ordinal, a regular (not
  external-content) table because its columns come from three tables; triggers on chunks, notes,
  chunk_tags and tags keep it in sync. `tags_fts(name)` is an external-content FTS5 table over `tags`.
- A migration only ever adds: a new one is appended, never edited (files in users' caches carry the old ones).
- Each is a function named `mNNN_what`; the names applied are recorded in `_migrations(name, applied)` (from
  m002 on, which also records m001), so `docstream doctor --index FILE` can say what a file went through.
- m003 adds `method` to `summaries` and `notes`: "model" (the model's own sentences, kept by the content gate)
  or "extractive" (the gate replaced a vacuous line by a sentence of the book); rows of older files are "model".
- m004 adds `windows`: the ~300-character sentence windows of the body with their embedding (`vec`, float16,
  `index/dense.py`), filled at the end of a read (or at the first question of an older index).
- m005 adds `words`: the body's searchable words that are not common (in < 5 % of its windows), with their
  embedding, filled when the text is chunked (or at the end of the read, or at the first question of an
  older index): a question's words are also searched as the book's own words nearest them in meaning
  (`index/dense.py` `related`).
"""
from __future__ import annotations

from typing import Callable

import sqlite_utils

FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"


def _tags_of(chunk: str) -> str:
    """SQL for a chunk's tag names in insertion order, joined for the FTS `tags` column."""
    return ("coalesce((SELECT group_concat(name, ' ; ') FROM (SELECT t.name FROM chunk_tags ct "
            f"JOIN tags t ON t.id = ct.tag_id WHERE ct.chunk = {chunk} ORDER BY ct.rowid)), '')")


def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(f"""
    CREATE TABLE document (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sha256 TEXT NOT NULL, path TEXT, title TEXT, size_chars INTEGER, model TEXT,
        settings TEXT NOT NULL DEFAULT '{{}}', settings_hash TEXT,
        status TEXT NOT NULL DEFAULT 'reading' CHECK (status IN ('reading', 'done')),
        chunks_total INTEGER, created TEXT NOT NULL, updated TEXT NOT NULL
    );
    CREATE TABLE chapters (
        "index" INTEGER PRIMARY KEY, title TEXT, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
        line_start INTEGER, line_end INTEGER
    );
    CREATE TABLE chunks (
        ordinal INTEGER PRIMARY KEY, chapter INTEGER, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
        line_start INTEGER, line_end INTEGER, tokens INTEGER, text TEXT NOT NULL
    );
    CREATE INDEX chunks_chapter ON chunks (chapter, ordinal);
    CREATE TABLE notes (
        chunk INTEGER PRIMARY KEY REFERENCES chunks (ordinal) ON DELETE CASCADE,
        gist TEXT NOT NULL, created TEXT NOT NULL
    );
    CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE chunk_tags (
        chunk INTEGER NOT NULL REFERENCES chunks (ordinal) ON DELETE CASCADE,
        tag_id INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
        source TEXT NOT NULL CHECK (source IN ('model', 'keyword', 'name')),
        PRIMARY KEY (chunk, tag_id)
    );
    CREATE INDEX chunk_tags_tag ON chunk_tags (tag_id, chunk);
    CREATE TABLE summaries (
        id INTEGER PRIMARY KEY,
        level TEXT NOT NULL CHECK (level IN ('rolling', 'chapter', 'book')),
        chapter INTEGER, chunk_start INTEGER NOT NULL, chunk_end INTEGER NOT NULL,
        text TEXT NOT NULL, created TEXT NOT NULL
    );
    CREATE INDEX summaries_level ON summaries (level, chapter, chunk_end);

    CREATE VIRTUAL TABLE chunks_fts USING fts5 (text, gist, tags, tokenize = '{FTS_TOKENIZE}');
    CREATE VIRTUAL TABLE tags_fts USING fts5 (
        name, content = 'tags', content_rowid = 'id', tokenize = '{FTS_TOKENIZE}');

    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, text, gist, tags) VALUES (new.ordinal, new.text,
            coalesce((SELECT gist FROM notes WHERE chunk = new.ordinal), ''), {_tags_of("new.ordinal")});
    END;
    CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
        DELETE FROM chunks_fts WHERE rowid = old.ordinal;
        INSERT INTO chunks_fts (rowid, text, gist, tags) VALUES (new.ordinal, new.text,
            coalesce((SELECT gist FROM notes WHERE chunk = new.ordinal), ''), {_tags_of("new.ordinal")});
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN DELETE FROM chunks_fts WHERE rowid = old.ordinal; END;

    CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN
        UPDATE chunks_fts SET gist = new.gist WHERE rowid = new.chunk;
    END;
    CREATE TRIGGER notes_au AFTER UPDATE ON notes BEGIN
        UPDATE chunks_fts SET gist = '' WHERE rowid = old.chunk;
        UPDATE chunks_fts SET gist = new.gist WHERE rowid = new.chunk;
    END;
    CREATE TRIGGER notes_ad AFTER DELETE ON notes BEGIN UPDATE chunks_fts SET gist = '' WHERE rowid = old.chunk; END;

    CREATE TRIGGER chunk_tags_ai AFTER INSERT ON chunk_tags BEGIN
        UPDATE chunks_fts SET tags = {_tags_of("new.chunk")} WHERE rowid = new.chunk;
    END;
    CREATE TRIGGER chunk_tags_au AFTER UPDATE ON chunk_tags BEGIN
        UPDATE chunks_fts SET tags = {_tags_of("old.chunk")} WHERE rowid = old.chunk;
        UPDATE chunks_fts SET tags = {_tags_of("new.chunk")} WHERE rowid = new.chunk;
    END;
    CREATE TRIGGER chunk_tags_ad AFTER DELETE ON chunk_tags BEGIN
        UPDATE chunks_fts SET tags = {_tags_of("old.chunk")} WHERE rowid = old.chunk;
    END;

    CREATE TRIGGER tags_ai AFTER INSERT ON tags BEGIN
        INSERT INTO tags_fts (rowid, name) VALUES (new.id, new.name);
    END;
    CREATE TRIGGER tags_ad AFTER DELETE ON tags BEGIN
        INSERT INTO tags_fts (tags_fts, rowid, name) VALUES ('delete', old.id, old.name);
    END;
    CREATE TRIGGER tags_au AFTER UPDATE ON tags BEGIN
        INSERT INTO tags_fts (tags_fts, rowid, name) VALUES ('delete', old.id, old.name);
        INSERT INTO tags_fts (rowid, name) VALUES (new.id, new.name);
        UPDATE chunks_fts SET tags = {_tags_of("chunks_fts.rowid")}
        WHERE rowid IN (SELECT chunk FROM chunk_tags WHERE tag_id = new.id);
    END;
    """)


def m002_migrations_table(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")


def m003_summary_method(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE summaries ADD COLUMN method TEXT NOT NULL DEFAULT 'model'")
    db.execute("ALTER TABLE notes ADD COLUMN method TEXT NOT NULL DEFAULT 'model'")


def m004_windows(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE windows (
        ordinal INTEGER PRIMARY KEY, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
        vec BLOB NOT NULL, CHECK (char_end > char_start))""")


def m005_words(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE words (word TEXT PRIMARY KEY, windows INTEGER NOT NULL, vec BLOB NOT NULL)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [m001_initial, m002_migrations_table,
                                                             m003_summary_method, m004_windows, m005_words]
SCHEMA_VERSION = len(MIGRATIONS)
