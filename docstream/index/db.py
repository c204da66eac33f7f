"""The per-document SQLite index: opening and checking the file, locking, writes and reads.

Design choices:
- One file per (document content, model, reading settings): `default_path(sha256, settings_hash)`.
  Different settings never share a file, so an index is reused only when all three match.
- The connection is a plain `sqlite3` connection in autocommit mode (`isolation_level=None`) wrapped in
  `sqlite_utils.Database`; every write runs in an explicit `BEGIN IMMEDIATE` transaction (`_write()`), so
  a writer takes the write lock up front instead of failing to upgrade a read. WAL + `busy_timeout`
  (30 s) let one writer and many readers work concurrently without `database is locked`.
- Schema by named migrations (`schema.py`): `MIGRATIONS[i]` takes the file from `user_version == i` to `i + 1`,
  each in its own transaction, and its name is recorded in `_migrations`. A newer `user_version` is refused; so is a file stamped with a foreign `application_id`,
  an unversioned file that already has tables, random bytes and anything failing `PRAGMA quick_check`.
  Those all raise `IndexFileError` with a one-line message that says what to do.
- The tag index: `tags(id, name UNIQUE)` + `chunk_tags(chunk, tag_id, source)`. All tags go through
  `normalize_tag()` (in search.py, with the stop words); a chunk's tags are deduped after normalisation, the first source wins in the order
  given. `add_note()` commits the note and its tags in one transaction and replaces any earlier note
  for that chunk (tags no longer used by any chunk are deleted).
- The tables, full-text indexes and triggers are in `schema.py` (migrations); the rows returned are the
  dataclasses of `rows.py`; FTS queries and tag normalisation are in `search.py`.
- Summaries: `rolling` keeps its history (one row per `chunk_end`; re-adding the same `chunk_end`
  replaces it) so resume can pick the latest and the history can be inspected; `chapter` keeps one row
  per chapter; `book` keeps exactly one row.
- `writer_lock()` is an exclusive `fcntl.flock` on `<db>.lock`, so two `read`s of one document never
  interleave notes; readers (`ask`, `search`) do not take it.
- Chunks and chapters are accepted as any object with the documented attributes, or as dicts.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from docstream.errors import IndexFileError
from docstream.index.reads import Reads
from docstream.index.schema import MIGRATIONS, SCHEMA_VERSION
from docstream.index.search import TAG_SOURCES, Tag, _tag_pairs, normalize_tag  # noqa: F401 (re-exported)
from docstream.paths import index_dir

APPLICATION_ID = 0x44537472  # "DStr"
BUSY_TIMEOUT_S = 30.0
SUMMARY_LEVELS = ("rolling", "chapter", "book")
DOCUMENT_FIELDS = (
    "sha256", "path", "title", "size_chars", "model", "settings", "settings_hash", "status", "chunks_total",
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def settings_hash(model_name: str, settings: dict[str, Any]) -> str:
    """sha256 (hex) of the model name and reading settings as stable JSON (sorted keys, no spaces)."""
    blob = json.dumps({"model": model_name, "settings": settings}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_path(sha256: str, settings_hash: str) -> Path:
    """`<index_dir>/<sha256[:16]>-<settings_hash[:8]>.db`."""
    return index_dir() / f"{sha256[:16]}-{settings_hash[:8]}.db"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


# ---------------------------------------------------------------- the index

class Index(Reads):
    """One document's index. Open with `Index.open(path)`; use as a context manager to close it."""

    def __init__(self, db: sqlite_utils.Database, path: Path | None):
        self.db = db
        self.path = path

    # -- opening -------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, create: bool = True, check: bool = True) -> "Index":
        """Open (and migrate) the index at `path`; `":memory:"` gives a private in-memory index."""
        memory = str(path) == ":memory:"
        p = None if memory else Path(path)
        if p is not None and not p.exists() and not create:
            raise IndexFileError(f"no index at {p} — read the document first")
        existed = p is not None and p.exists() and p.stat().st_size > 0
        where = "in-memory index" if memory else f"index {p}"
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(":memory:" if memory else str(p), timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None)
        except sqlite3.Error as e:
            raise IndexFileError(f"cannot open {where} ({e}) — check the path and its permissions") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            db = sqlite_utils.Database(conn, execute_plugins=False)
            index = cls(db, p)
            index._setup(where, existed and check)
        except IndexFileError:
            conn.close()
            raise
        except sqlite3.OperationalError as e:
            conn.close()
            if _is_busy(e):
                raise IndexFileError(f"{where} is busy — another docstream process holds it; try again") from e
            raise IndexFileError(f"{where} cannot be opened ({e}) — delete it or run with --reread") from e
        except sqlite3.DatabaseError as e:
            conn.close()
            raise IndexFileError(f"{where} is corrupt — delete it or run with --reread") from e
        return index

    def _setup(self, where: str, quick_check: bool) -> None:
        conn = self.db.conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # fails on a non-database file
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise IndexFileError(f"{where} is not a docstream index — delete it or choose another path")
        if version > SCHEMA_VERSION:
            raise IndexFileError(f"{where} was made by a newer docstream (schema {version}, this one knows "
                                 f"{SCHEMA_VERSION}) — upgrade or use --reread")
        if quick_check:
            result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if result != ["ok"]:
                raise IndexFileError(f"{where} is corrupt — delete it or run with --reread")
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables and app_id != APPLICATION_ID:
                raise IndexFileError(f"{where} is not a docstream index — delete it or choose another path")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        conn = self.db.conn
        while conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # readers skip the lock
            with self._write():
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version >= SCHEMA_VERSION:
                    return
                MIGRATIONS[version](self.db)
                if self.db["_migrations"].exists():  # record this one (and, the first time, those before it)
                    conn.executemany("INSERT OR IGNORE INTO _migrations (name, applied) VALUES (?, ?)",
                                     [(m.__name__, _now()) for m in MIGRATIONS[:version + 1]])
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {version + 1}")

    def migrations(self) -> list[tuple[str, str]]:
        """The named migrations applied to this file, in order: (name, when recorded)."""
        return [tuple(r) for r in self.db.conn.execute("SELECT name, applied FROM _migrations ORDER BY name")]

    @property
    def schema_version(self) -> int:
        return self.db.conn.execute("PRAGMA user_version").fetchone()[0]

    def integrity(self) -> str:
        """`PRAGMA integrity_check` joined into one string: `"ok"` for a healthy file."""
        return "\n".join(r[0] for r in self.db.conn.execute("PRAGMA integrity_check").fetchall())

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Index {self.path or ':memory:'}>"

    # -- transactions and locking ----------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        if conn.in_transaction:  # nested: join the outer transaction
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if _is_busy(e):
                raise IndexFileError(f"index {self.path} is busy — another docstream process is writing it; "
                                     "try again") from e
            raise
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def writer_lock(self, timeout: float = 5.0) -> Iterator[None]:
        """Hold an exclusive lock on `<db>.lock` so only one process writes notes for this document."""
        if self.path is None:
            yield
            return
        import fcntl

        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + max(0.0, timeout)
            told = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told and timeout >= 1.0:
                        told = True
                        print(f"docstream: another process is reading this document; waiting for it to finish "
                              f"(up to {timeout:.0f} s, lock {lock_path})…", file=sys.stderr, flush=True)
                    if time.monotonic() >= deadline:
                        raise IndexFileError(
                            f"another docstream process is reading this document (lock {lock_path} is held) "
                            "— wait for it to finish or stop it") from None
                    time.sleep(0.05)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- writes ---------------------------------------------------------
    def set_document(self, **fields: Any) -> None:
        """Create or update the single document row. Unknown fields raise TypeError."""
        unknown = set(fields) - set(DOCUMENT_FIELDS)
        if unknown:
            raise TypeError(f"unknown document fields: {', '.join(sorted(unknown))}")
        if "settings" in fields and not isinstance(fields["settings"], str):
            fields["settings"] = json.dumps(fields["settings"], sort_keys=True, default=str)
        if "status" in fields and fields["status"] not in ("reading", "done"):
            raise ValueError(f"status must be 'reading' or 'done', not {fields['status']!r}")
        now = _now()
        with self._write() as conn:
            exists = conn.execute("SELECT 1 FROM document WHERE id = 1").fetchone()
            if exists:
                if fields:
                    sets = ", ".join(f"{k} = :{k}" for k in fields)
                    conn.execute(f"UPDATE document SET {sets}, updated = :updated WHERE id = 1",
                                 {**fields, "updated": now})
            else:
                if not fields.get("sha256"):
                    raise ValueError("the first set_document() call needs sha256=")
                cols = ["id", "created", "updated", *fields]
                conn.execute(f"INSERT INTO document ({', '.join(cols)}) VALUES "
                             f"({', '.join(':' + c for c in cols)})",
                             {"id": 1, "created": now, "updated": now, **fields})

    def set_status(self, status: str) -> None:
        self.set_document(status=status)

    def add_chapters(self, chapters: Iterable[Any]) -> None:
        """Insert or replace chapters (objects/dicts with index, title, char_start, char_end[, line_*])."""
        rows = [(_get(c, "index"), _get(c, "title"), _get(c, "char_start"), _get(c, "char_end"),
                 _get(c, "line_start"), _get(c, "line_end")) for c in chapters]
        with self._write() as conn:
            conn.executemany(
                'INSERT INTO chapters ("index", title, char_start, char_end, line_start, line_end) '
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (\"index\") DO UPDATE SET title = excluded.title, "
                "char_start = excluded.char_start, char_end = excluded.char_end, "
                "line_start = coalesce(excluded.line_start, line_start), "
                "line_end = coalesce(excluded.line_end, line_end)", rows)
            self._fill_chapters(conn)

    def add_windows(self, spans: list[tuple[int, int]], vecs: list[bytes]) -> None:
        """Store the sentence windows and their packed embeddings (`index/dense.py`) in one transaction."""
        assert len(spans) == len(vecs), (len(spans), len(vecs))
        with self._write() as conn:
            conn.execute("DELETE FROM windows")
            conn.executemany("INSERT INTO windows (ordinal, char_start, char_end, vec) VALUES (?, ?, ?, ?)",
                             [(i, a, b, v) for i, ((a, b), v) in enumerate(zip(spans, vecs))])

    def add_words(self, words: list[tuple[str, int]], vecs: list[bytes]) -> None:
        """Store the body's words (word, how many windows hold it) and their packed embeddings, in one transaction."""
        assert len(words) == len(vecs), (len(words), len(vecs))
        with self._write() as conn:
            conn.execute("DELETE FROM words")
            conn.executemany("INSERT INTO words (word, windows, vec) VALUES (?, ?, ?)",
                             [(w, n, v) for (w, n), v in zip(words, vecs)])

    def add_chunks(self, chunks: Iterable[Any]) -> None:
        """Insert chunks in one transaction; re-adding identical chunks changes nothing.

        Chapters referenced by chunks but not yet stored are created from the chunks' `chapter_title` and
        spans; missing chapter line spans are filled from their chunks.
        """
        rows = []
        titles: dict[int, str | None] = {}
        for c in chunks:
            ch = _get(c, "chapter")
            rows.append((_get(c, "ordinal"), ch, _get(c, "char_start"), _get(c, "char_end"),
                         _get(c, "line_start"), _get(c, "line_end"), _get(c, "tokens"), _get(c, "text")))
            if ch is not None:
                titles.setdefault(ch, _get(c, "chapter_title"))
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO chunks (ordinal, chapter, char_start, char_end, line_start, line_end, tokens, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ordinal) DO UPDATE SET chapter = excluded.chapter, "
                "char_start = excluded.char_start, char_end = excluded.char_end, "
                "line_start = excluded.line_start, line_end = excluded.line_end, tokens = excluded.tokens, "
                "text = excluded.text WHERE (chunks.chapter, chunks.char_start, chunks.char_end, "
                "chunks.line_start, chunks.line_end, chunks.tokens, chunks.text) IS NOT (excluded.chapter, "
                "excluded.char_start, excluded.char_end, excluded.line_start, excluded.line_end, "
                "excluded.tokens, excluded.text)", rows)
            conn.executemany(
                'INSERT OR IGNORE INTO chapters ("index", title, char_start, char_end) SELECT ?, ?, '
                "min(char_start), max(char_end) FROM chunks WHERE chapter = ?",
                [(ch, title, ch) for ch, title in titles.items()])
            self._fill_chapters(conn)

    @staticmethod
    def _fill_chapters(conn: sqlite3.Connection) -> None:
        conn.execute(
            'UPDATE chapters SET line_start = (SELECT min(line_start) FROM chunks WHERE chapter = chapters."index") '
            "WHERE line_start IS NULL")
        conn.execute(
            'UPDATE chapters SET line_end = (SELECT max(line_end) FROM chunks WHERE chapter = chapters."index") '
            "WHERE line_end IS NULL")

    def add_note(self, chunk: int, gist: str, tags: Any = None, method: str = "model") -> list[Tag]:
        """Store the note for `chunk` with its tags in one transaction, replacing any earlier note.

        `tags` is `{source: [name, ...]}`, `[(name, source), ...]` (or `(source, name)`), or `[name, ...]`
        (source "model"). Returns the tags actually stored, after normalisation and dedupe.
        """
        pairs = _tag_pairs(tags)
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM chunks WHERE ordinal = ?", (chunk,)).fetchone():
                raise ValueError(f"chunk {chunk} is not in the index — add_chunks() first")
            conn.execute("INSERT INTO notes (chunk, gist, created, method) VALUES (?, ?, ?, ?) ON CONFLICT (chunk) "
                         "DO UPDATE SET gist = excluded.gist, created = excluded.created, method = excluded.method "
                         "WHERE (notes.gist, notes.method) IS NOT (excluded.gist, excluded.method)",
                         (chunk, gist.strip(), _now(), method))
            old = [r[0] for r in conn.execute("SELECT tag_id FROM chunk_tags WHERE chunk = ?", (chunk,))]
            current = [(r[0], r[1]) for r in conn.execute(
                "SELECT t.name, ct.source FROM chunk_tags ct JOIN tags t ON t.id = ct.tag_id "
                "WHERE ct.chunk = ? ORDER BY ct.rowid", (chunk,))]
            if current == [tuple(p) for p in pairs]:
                return pairs
            conn.execute("DELETE FROM chunk_tags WHERE chunk = ?", (chunk,))
            for tag in pairs:
                conn.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (tag.name,))
                conn.execute("INSERT INTO chunk_tags (chunk, tag_id, source) "
                             "SELECT ?, id, ? FROM tags WHERE name = ?", (chunk, tag.source, tag.name))
            if old:
                conn.execute(f"DELETE FROM tags WHERE id IN ({', '.join('?' * len(old))}) "
                             "AND NOT EXISTS (SELECT 1 FROM chunk_tags WHERE tag_id = tags.id)", old)
        return pairs

    def delete_note(self, chunk: int) -> None:
        with self._write() as conn:
            old = [r[0] for r in conn.execute("SELECT tag_id FROM chunk_tags WHERE chunk = ?", (chunk,))]
            conn.execute("DELETE FROM chunk_tags WHERE chunk = ?", (chunk,))
            conn.execute("DELETE FROM notes WHERE chunk = ?", (chunk,))
            if old:
                conn.execute(f"DELETE FROM tags WHERE id IN ({', '.join('?' * len(old))}) "
                             "AND NOT EXISTS (SELECT 1 FROM chunk_tags WHERE tag_id = tags.id)", old)

    def add_summary(self, level: str, text: str, chunk_start: int, chunk_end: int,
                    chapter: int | None = None, method: str = "model") -> int:
        """Store a summary; returns its id. See the module docstring for what each level replaces. `method`:
        "model" or "extractive" (the content gate's fallback)."""
        if level not in SUMMARY_LEVELS:
            raise ValueError(f"summary level must be one of {', '.join(SUMMARY_LEVELS)}, not {level!r}")
        if level == "chapter" and chapter is None:
            raise ValueError("a chapter summary needs chapter=")
        with self._write() as conn:
            if level == "rolling":
                conn.execute("DELETE FROM summaries WHERE level = 'rolling' AND chunk_end = ?", (chunk_end,))
            elif level == "chapter":
                conn.execute("DELETE FROM summaries WHERE level = 'chapter' AND chapter = ?", (chapter,))
            else:
                conn.execute("DELETE FROM summaries WHERE level = 'book'")
            cur = conn.execute("INSERT INTO summaries (level, chapter, chunk_start, chunk_end, text, created, method) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (level, chapter, chunk_start, chunk_end, text, _now(), method))
            return cur.lastrowid


def _is_busy(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg
