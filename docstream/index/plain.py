"""The plain BM25 index a user would build instead of docstream: fixed ~2000-character chunks of the book's
text in an in-memory SQLite FTS5 table (porter), no notes, no tags, no summaries (`docstream bench qa --modes
rag`, `docstream ask --mode rag`).

Design choices:
- Chunks are cut at the last paragraph break (else line break, else space) before `size` characters, so they
  are the paragraphs a user's splitter would make; offsets are exact into the document text.
- The query is the question's searchable words OR-ed (`fts_query`), ranked by FTS5's `bm25()`: the textbook
  baseline, with the same tokenizer and stop words as docstream's own text search.
"""
from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from .schema import FTS_TOKENIZE
from .search import fts_query

CHUNK_CHARS = 2000
_BREAKS = (re.compile(r"\r?\n[ \t]*\r?\n"), re.compile(r"\r?\n"), re.compile(r" "))


@dataclass(frozen=True)
class PlainChunk:
    start: int
    end: int
    text: str


def plain_chunks(text: str, start: int, end: int, size: int = CHUNK_CHARS) -> list[PlainChunk]:
    """`text[start:end]` in consecutive pieces of at most `size` characters (whitespace-only pieces dropped)."""
    assert size >= 100, size
    out: list[PlainChunk] = []
    a = start
    while a < end:
        b = min(end, a + size)
        if b < end:
            window = text[a + size // 2:b]
            for brk in _BREAKS:
                cuts = [m.end() for m in brk.finditer(window)]
                if cuts:
                    b = a + size // 2 + cuts[-1]
                    break
        piece = text[a:b]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece.rstrip())
            out.append(PlainChunk(a + lead, a + trail, piece[lead:trail]))
        a = b
    return out


class PlainIndex:
    """BM25 over plain chunks, in memory (real SQLite FTS5); built in a fraction of a second per novel."""

    def __init__(self, chunks: list[PlainChunk]):
        self.chunks = chunks
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute(f"CREATE VIRTUAL TABLE plain USING fts5 (text, tokenize = '{FTS_TOKENIZE}')")
        self.conn.executemany("INSERT INTO plain (rowid, text) VALUES (?, ?)",
                              [(i, c.text) for i, c in enumerate(chunks)])

    def top(self, question: str, k: int = 5) -> list[PlainChunk]:
        """The `k` best chunks for `question`, best first ([] when it has no searchable word)."""
        match = fts_query(question)
        if not match:
            return []
        rows = self.conn.execute("SELECT rowid FROM plain WHERE plain MATCH ? ORDER BY bm25(plain), rowid LIMIT ?",
                                 [match, k]).fetchall()
        return [self.chunks[r[0]] for r in rows]

    def close(self) -> None:
        self.conn.close()
