"""The reads of an `Index` (a mixin over its `sqlite_utils.Database`): each returns the dataclasses of
`rows.py`, in document order, with the chapter title joined in where a row points into the file."""
from __future__ import annotations

import json
from collections.abc import Iterable

import sqlite_utils

from docstream.index import search as _search
from docstream.index.rows import DocumentInfo, Hit, IndexedChapter, IndexedChunk, Note, Summary
from docstream.index.search import Tag


class Reads:
    db: sqlite_utils.Database

    def document(self) -> DocumentInfo | None:
        row = next(self.db.query("SELECT * FROM document WHERE id = 1"), None)
        if row is None:
            return None
        row.pop("id")
        row["settings"] = json.loads(row["settings"] or "{}")
        return DocumentInfo(**row)

    def chapters(self) -> list[IndexedChapter]:
        return [IndexedChapter(**r) for r in self.db.query(
            'SELECT "index", title, char_start, char_end, line_start, line_end FROM chapters ORDER BY "index"')]

    _CHUNK_SQL = ("SELECT c.ordinal, c.chapter, ch.title AS chapter_title, c.char_start, c.char_end, "
                  "c.line_start, c.line_end, c.tokens, c.text FROM chunks c "
                  'LEFT JOIN chapters ch ON ch."index" = c.chapter')

    def chunks(self, ordinals: Iterable[int] | None = None) -> list[IndexedChunk]:
        """All chunks in order, or only `ordinals` (still in document order)."""
        if ordinals is None:
            return [IndexedChunk(**r) for r in self.db.query(self._CHUNK_SQL + " ORDER BY c.ordinal")]
        ids = list(dict.fromkeys(int(o) for o in ordinals))
        if not ids:
            return []
        return [IndexedChunk(**r) for r in self.db.query(
            self._CHUNK_SQL + " WHERE c.ordinal IN (SELECT value FROM json_each(?)) ORDER BY c.ordinal",
            [json.dumps(ids)])]

    def chunk(self, ordinal: int) -> IndexedChunk | None:
        row = next(self.db.query(self._CHUNK_SQL + " WHERE c.ordinal = ?", [ordinal]), None)
        return IndexedChunk(**row) if row else None

    def chunk_at(self, offset: int) -> IndexedChunk | None:
        """The chunk holding char `offset` (the last one starting at or before it)."""
        row = next(self.db.query(self._CHUNK_SQL + " WHERE c.char_start <= ? ORDER BY c.char_start DESC LIMIT 1",
                                 [offset]), None)
        return IndexedChunk(**row) if row else None

    def notes(self, chapter: int | None = None) -> list[Note]:
        """Notes in document order, joined with chunk spans, chapter title and tags."""
        where, params = ("WHERE c.chapter = ?", [chapter]) if chapter is not None else ("", [])
        rows = list(self.db.query(
            "SELECT n.chunk, c.chapter, ch.title AS chapter_title, c.char_start, c.char_end, c.line_start, "
            "c.line_end, n.gist, n.created, n.method, (SELECT group_concat(name, char(31)) FROM (SELECT t.name FROM "
            "chunk_tags ct JOIN tags t ON t.id = ct.tag_id WHERE ct.chunk = n.chunk ORDER BY ct.rowid)) AS tags "
            'FROM notes n JOIN chunks c ON c.ordinal = n.chunk LEFT JOIN chapters ch ON ch."index" = c.chapter '
            f"{where} ORDER BY n.chunk", params))
        for r in rows:
            r["tags"] = r["tags"].split("\x1f") if r["tags"] else []
        return [Note(**r) for r in rows]

    def tags_for(self, chunk: int) -> list[Tag]:
        return [Tag(r["name"], r["source"]) for r in self.db.query(
            "SELECT t.name, ct.source FROM chunk_tags ct JOIN tags t ON t.id = ct.tag_id WHERE ct.chunk = ? "
            "ORDER BY ct.rowid", [chunk])]

    def top_names(self, n: int) -> list[str]:
        """The `n` name tags found in the most passages (most first)."""
        return [r["name"] for r in self.db.query(
            "SELECT t.name, count(DISTINCT ct.chunk) AS k FROM chunk_tags ct JOIN tags t ON t.id = ct.tag_id "
            "WHERE ct.source = 'name' GROUP BY t.id ORDER BY k DESC, t.name LIMIT ?", [n])]

    def first_unnoted_chunk(self) -> int | None:
        """The lowest chunk ordinal without a note (the resume point); None when every stored chunk has one."""
        row = self.db.conn.execute("SELECT min(ordinal) FROM chunks WHERE ordinal NOT IN "
                                   "(SELECT chunk FROM notes)").fetchone()
        return row[0]

    def summaries(self, level: str, chapter: int | None = None) -> list[Summary]:
        """Summaries of `level` (optionally of one chapter), ordered by chapter then chunk_end."""
        where, params = "WHERE level = ?", [level]
        if chapter is not None:
            where, params = where + " AND chapter = ?", [level, chapter]
        return [Summary(**r) for r in self.db.query(
            f"SELECT * FROM summaries {where} ORDER BY chapter, chunk_end, id", params)]

    def latest_summary(self, level: str, chapter: int | None = None) -> Summary | None:
        found = self.summaries(level, chapter)
        return max(found, key=lambda s: (s.chunk_end, s.id)) if found else None

    def window_count(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM windows").fetchone()[0]

    def windows(self) -> tuple[list[tuple[int, int]], list[bytes]]:
        """The embedded sentence windows: their (char_start, char_end) and packed vectors, in order."""
        rows = self.db.conn.execute("SELECT char_start, char_end, vec FROM windows ORDER BY ordinal").fetchall()
        return [(a, b) for a, b, _ in rows], [v for *_, v in rows]

    def word_count(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM words").fetchone()[0]

    def words(self) -> tuple[list[str], list[bytes]]:
        """The embedded words of the body (`index/dense.py` `related`) and their packed vectors, by word."""
        rows = self.db.conn.execute("SELECT word, vec FROM words ORDER BY word").fetchall()
        return [w for w, _ in rows], [v for _, v in rows]

    def counts(self) -> dict[str, int]:
        return {t: self.db.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("chapters", "chunks", "notes", "tags", "chunk_tags", "summaries", "windows", "words")}

    # -- search ---------------------------------------------------------
    def search(self, query: str, limit: int = 10, *, column: str | None = None,
               snippets: bool = True) -> list[Hit]:
        """BM25 search over chunk text, gists and tags (see `docstream.index.search`)."""
        return _search.search(self.db, query, limit, column=column, snippets=snippets)
