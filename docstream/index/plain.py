"""The plain BM25 index a user would build instead of docstream: fixed ~2000-character chunks of the book's
text in an in-memory SQLite FTS5 table (porter), no notes, no tags, no summaries (`docstream bench qa --modes
rag`, `docstream ask --mode rag`).

Design choices:
- Chunks are the chunker's fixed sections (`text.chapters.fixed_sections`: cut at the last paragraph break,
  else line break, else space, before `size` characters), so they are the paragraphs a user's splitter would
  make; offsets are exact into the document text.
- The same index over sentence windows (`sentence_pieces`, ~300 characters) is docstream's sentence-level
  search: the reader's candidate windows (`ask/answer.py`).
- The query is the question's searchable words OR-ed (`fts_query`), ranked by FTS5's `bm25()`: the textbook
  baseline, with the same tokenizer and stop words as docstream's own text search.
- `weighted` ranks by a weight per word (docstream's sentence search adds the book's words related to the
  question's, `index/dense.py`): FTS5's BM25 of an OR query is the sum of its terms' own scores, so each word
  is scored alone and the scores are summed with their weights; weights of 1 rank as `top` does.
"""
from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass

from ..text.chapters import fixed_sections
from ..text.load import Document
from ..text.sentences import sentence_windows
from .schema import FTS_TOKENIZE
from .search import fts_query

CHUNK_CHARS = 2000


@dataclass(frozen=True)
class PlainChunk:
    ordinal: int
    start: int
    end: int
    text: str


def plain_chunks(doc: Document, start: int, end: int, size: int = CHUNK_CHARS) -> list[PlainChunk]:
    """`doc.text[start:end]` in consecutive stripped pieces of at most `size` characters (blank ones dropped)."""
    assert size >= 100, size
    out: list[PlainChunk] = []
    for a, b in fixed_sections(doc, start, end, size):
        piece = doc.text[a:b]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append(PlainChunk(len(out), a + lead, a + len(piece.rstrip()), piece.strip()))
    return out


def sentence_pieces(doc: Document, start: int, end: int, span_chars: int = 300) -> list[PlainChunk]:
    """`doc.text[start:end]` as consecutive sentence-aligned windows of about `span_chars` (exact offsets)."""
    return [PlainChunk(i, a, b, doc.text[a:b]) for i, (a, b) in
            enumerate(sentence_windows(doc.text[start:end], start, span_chars))]


class PlainIndex:
    """BM25 over plain chunks, in memory (real SQLite FTS5); built in a fraction of a second per novel."""

    def __init__(self, chunks: list[PlainChunk]):
        self.chunks = chunks
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute(f"CREATE VIRTUAL TABLE plain USING fts5 (text, tokenize = '{FTS_TOKENIZE}')")
        self.conn.executemany("INSERT INTO plain (rowid, text) VALUES (?, ?)",
                              [(c.ordinal, c.text) for c in chunks])

    def top(self, question: str, k: int = 5) -> list[PlainChunk]:
        """The `k` best chunks for `question`, best first ([] when it has no searchable word)."""
        match = fts_query(question)
        if not match:
            return []
        rows = self.conn.execute("SELECT rowid FROM plain WHERE plain MATCH ? ORDER BY bm25(plain), rowid LIMIT ?",
                                 [match, k]).fetchall()
        return [self.chunks[r[0]] for r in rows]

    def weighted(self, weights: dict[str, float], k: int = 5) -> list[PlainChunk]:
        """The `k` best chunks by the sum over `weights`' words of weight x the word's BM25, best first."""
        score: dict[int, float] = defaultdict(float)
        for word, w in weights.items():
            match = fts_query(word)
            for rowid, s in self.conn.execute("SELECT rowid, bm25(plain) FROM plain WHERE plain MATCH ?",
                                              [match]) if match else ():
                score[rowid] -= w * s  # bm25() is negative: lower is better
        return [self.chunks[r] for r in sorted(score, key=lambda r: (-score[r], r))[:k]]

    def close(self) -> None:
        self.conn.close()
