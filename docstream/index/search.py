"""Full-text search over the tag index: safe FTS5 query building and BM25 ranking.

Design choices:
- User text never reaches FTS5 syntax. `fts_terms()` keeps only word tokens (`\\w+`, lowercased), drops
  stop words and 1-char tokens, and `fts_query()` quotes each one as an FTS5 string (`"word"`) joined
  with OR. Quotes, `AND`/`OR`/`NOT`/`NEAR(`, `*`, `^`, `-`, parentheses and colons are therefore either
  discarded as punctuation or searched as ordinary words; no input can raise an FTS5 syntax error.
- Text that is empty after cleaning yields the empty query `""`, and every search function returns `[]`
  for it instead of raising.
- One FTS5 table `chunks_fts(text, gist, tags)` (porter + unicode61) keyed by chunk ordinal; ranking is
  `bm25()` with column weights text 1.0, gist 2.0, tags 3.0 (short, model-chosen fields are stronger
  evidence than a passing word in the text). `column=` restricts a query to one column through an FTS5
  column filter (`text : (...)`), which the retriever uses to get one ranked list per field.
- Scores are reported positive (higher = better): SQLite's bm25() is negated.
- `snippet()` highlighting is optional: the CLI wants it, the retriever does not pay for it.
- Tag normalisation lives here too, next to the stop words it shares with query cleaning: `normalize_tag()`
  decides what a tag is; `Index.add_note()` stores only normalised, deduped tags.
- The functions take a `sqlite_utils.Database` so this module does not import `db.py`;
  `Index.search()` is the public entry point.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import sqlite_utils

from .rows import Hit

__all__ = ["STOP_WORDS", "TAG_SOURCES", "Hit", "Tag", "fts_terms", "fts_query", "normalize_tag", "search", "WEIGHTS"]

# Column weights for bm25(chunks_fts, text, gist, tags).
WEIGHTS: tuple[float, float, float] = (1.0, 2.0, 3.0)
COLUMNS = ("text", "gist", "tags")
MAX_TERMS = 32
TAG_SOURCES = ("model", "keyword", "name")

STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are aren as at be because been before being below
    between both but by can cannot could couldn did didn do does doesn doing don down during each else
    ever few for from further had hadn has hasn have haven having he her here hers herself him himself his
    how however i if in into is isn it its itself just let me might more most must mustn my myself no nor
    not now of off on once only or other ought our ours ourselves out over own same shall shan she should
    shouldn so some such than that the their theirs them themselves then there these they this those
    through to too under until up upon us very was wasn we were weren what whatever when where whether
    which while who whom whose why will with won would wouldn yet you your yours yourself yourselves
    also tell say said yes
    """.split()
)

_WORD = re.compile(r"\w+", re.UNICODE)


# ---------------------------------------------------------------- tag normalisation

_EDGE = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)
_ARTICLES = ("the", "a", "an")


def normalize_tag(s: str | None) -> str | None:
    """Canonical tag text, or None for a tag not worth keeping.

    Lowercase; `_` and whitespace collapsed to single spaces; punctuation and quotes stripped at both
    ends; articles ("the", "a", "an") stripped at both ends; dropped if empty, 1 character, a pure
    number, a single stop word, or longer than 5 words.
    """
    if not s or not isinstance(s, str):
        return None
    t = " ".join(s.lower().replace("_", " ").split())
    while True:
        before = t
        t = _EDGE.sub("", t)
        words = t.split()
        while words and words[0] in _ARTICLES:
            words.pop(0)
        while words and words[-1] in _ARTICLES:
            words.pop()
        t = " ".join(words)
        if t == before:
            break
    if len(t) < 2 or len(t.split()) > 5:
        return None
    if re.fullmatch(r"[\d\s.,:/-]+", t) or t in STOP_WORDS:
        return None
    return t


class Tag(NamedTuple):
    name: str
    source: str = "model"


def _tag_pairs(tags: Any) -> list[Tag]:
    """Accept {source: [names]}, [(name, source)], [(source, name)] (unambiguous), [Tag] or [name]."""
    pairs: list[tuple[str, str]] = []
    if tags is None:
        return []
    if isinstance(tags, dict):
        for source, names in tags.items():
            if isinstance(names, str):
                names = [names]
            pairs.extend((n, source) for n in names or [])
    else:
        for item in tags:
            if isinstance(item, str):
                pairs.append((item, "model"))
                continue
            a, b = item
            if a in TAG_SOURCES and b not in TAG_SOURCES:
                a, b = b, a
            pairs.append((a, b))
    out: dict[str, Tag] = {}
    for name, source in pairs:
        if source not in TAG_SOURCES:
            raise ValueError(f"tag source must be one of {', '.join(TAG_SOURCES)}, not {source!r}")
        norm = normalize_tag(name)
        if norm is not None and norm not in out:
            out[norm] = Tag(norm, source)
    return list(out.values())


def searchable(text: str) -> Iterator[str]:
    """The searchable words of `text` in order: lowercased `\\w+` tokens, no stop words, no 1-char tokens."""
    for word in _WORD.findall(text.lower()):
        word = word.strip("_")
        if len(word) >= 2 and word not in STOP_WORDS:
            yield word


def fts_terms(text: str | None) -> list[str]:
    """The searchable words of `text` (`searchable`), deduped, at most `MAX_TERMS`."""
    if not text:
        return []
    seen: dict[str, None] = {}
    for word in searchable(text):
        seen.setdefault(word, None)
        if len(seen) >= MAX_TERMS:
            break
    return list(seen)


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def fts_query(text: str | None, column: str | None = None, prefix: bool = False) -> str:
    """A safe FTS5 MATCH expression for arbitrary user text, or `""` when nothing searchable is left.

    Each term is quoted (`"word"`) and the terms are OR-ed. `prefix=True` also adds `"word"*` for terms
    of 4+ characters. `column` wraps the expression in a column filter (`gist : (...)`).
    """
    terms = fts_terms(text)
    if not terms:
        return ""
    parts = []
    for t in terms:
        parts.append(_quote(t))
        if prefix and len(t) >= 4:
            parts.append(_quote(t) + "*")
    expr = " OR ".join(parts)
    if column is not None:
        if column not in COLUMNS:
            raise ValueError(f"column must be one of {', '.join(COLUMNS)}, not {column!r}")
        expr = f"{column} : ({expr})"
    return expr


def search(
    db: sqlite_utils.Database,
    query: str,
    limit: int = 10,
    *,
    column: str | None = None,
    snippets: bool = True,
    highlight: tuple[str, str] = ("[", "]"),
) -> list[Hit]:
    """BM25-ranked hits for free text `query` (never raises on FTS syntax; `[]` if nothing searchable)."""
    match = fts_query(query, column=column)
    if not match or limit <= 0:
        return []
    w = ", ".join(str(x) for x in WEIGHTS)
    snippet_sql = "snippet(chunks_fts, -1, ?, ?, '…', 16)" if snippets else "NULL"
    params: list[object] = [highlight[0], highlight[1]] if snippets else []
    params += [match, limit]
    sql = f"""
        WITH hits AS (
            SELECT rowid AS chunk, -bm25(chunks_fts, {w}) AS score, {snippet_sql} AS snippet
            FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts, {w}) LIMIT ?
        )
        SELECT hits.chunk, hits.score, hits.snippet, c.chapter, ch.title AS chapter_title,
               c.char_start, c.char_end, c.line_start, c.line_end, n.gist,
               (SELECT group_concat(name, char(31)) FROM (
                    SELECT t.name FROM chunk_tags ct JOIN tags t ON t.id = ct.tag_id
                    WHERE ct.chunk = hits.chunk ORDER BY ct.rowid)) AS tags
        FROM hits
        JOIN chunks c ON c.ordinal = hits.chunk
        LEFT JOIN chapters ch ON ch."index" = c.chapter
        LEFT JOIN notes n ON n.chunk = hits.chunk
        ORDER BY hits.score DESC, hits.chunk
    """
    rows = db.execute(sql, params).fetchall()
    return [
        Hit(
            chunk=r[0],
            score=r[1],
            snippet=r[2],
            chapter=r[3],
            chapter_title=r[4],
            char_start=r[5],
            char_end=r[6],
            line_start=r[7],
            line_end=r[8],
            gist=r[9],
            tags=r[10].split("\x1f") if r[10] else [],
        )
        for r in rows
    ]


def ranked_chunks(db: sqlite_utils.Database, query: str, limit: int, column: str | None = None) -> list[int]:
    """Chunk ordinals only, best first — the cheap form the retriever fuses."""
    match = fts_query(query, column=column)
    if not match or limit <= 0:
        return []
    w = ", ".join(str(x) for x in WEIGHTS)
    sql = f"SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts, {w}), rowid LIMIT ?"
    return [r[0] for r in db.execute(sql, [match, limit]).fetchall()]


# ---------------------------------------------------------------------------------------------- for retrieval
def chunk_count(db: sqlite_utils.Database) -> int:
    return db.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]


def chunk_df(db: sqlite_utils.Database, term: str) -> int:
    """Number of chunks matching `term` in any column (porter-stemmed, like the searches)."""
    match = fts_query(term)
    if not match:
        return 0
    return db.conn.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", [match]).fetchone()[0]


def gists_of(db: sqlite_utils.Database, chunks: list[int]) -> dict[int, str]:
    return dict(db.conn.execute("SELECT chunk, gist FROM notes WHERE chunk IN (SELECT value FROM json_each(?))",
                                [json.dumps(chunks)]).fetchall())


def tag_matches(db: sqlite_utils.Database, match: str, limit: int = 500) -> list[tuple[int, str, int]]:
    """(tag id, name, chunks carrying it) for the tags whose names match the FTS query `match`."""
    return db.conn.execute(
        "SELECT t.id, t.name, (SELECT count(*) FROM chunk_tags ct WHERE ct.tag_id = t.id) AS df "
        "FROM tags_fts JOIN tags t ON t.id = tags_fts.rowid WHERE tags_fts MATCH ? LIMIT ?", [match, limit]).fetchall()


def chunks_with_tags(db: sqlite_utils.Database, tag_ids: list[int]) -> list[tuple[int, int]]:
    """(chunk, tag id) for every chunk carrying one of `tag_ids`."""
    return db.conn.execute("SELECT chunk, tag_id FROM chunk_tags WHERE tag_id IN (SELECT value FROM json_each(?))",
                           [json.dumps(tag_ids)]).fetchall()


def cooccurring_tags(db: sqlite_utils.Database, seeds: list[int], exclude: list[int], min_chunks: int
                     ) -> list[tuple[int, int, int]]:
    """(tag id, chunks shared with the seeds, chunks carrying it) for tags outside `exclude` that appear in at
    least `min_chunks` of the seeds' chunks."""
    return db.conn.execute(
        "SELECT ct2.tag_id, count(DISTINCT ct2.chunk) AS cooc, "
        "(SELECT count(*) FROM chunk_tags x WHERE x.tag_id = ct2.tag_id) AS df "
        "FROM chunk_tags ct1 JOIN chunk_tags ct2 ON ct2.chunk = ct1.chunk "
        "WHERE ct1.tag_id IN (SELECT value FROM json_each(?)) AND ct2.tag_id NOT IN "
        "(SELECT value FROM json_each(?)) GROUP BY ct2.tag_id HAVING cooc >= ?",
        [json.dumps(seeds), json.dumps(exclude), min_chunks]).fetchall()
