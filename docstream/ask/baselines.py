"""The baselines every answer is judged against, built as a user would build them.

- `rag`: plain BM25 RAG — the book cut into ~2000-character chunks, FTS5 (porter) over their text, the top 5
  chunks put in the answer prompt as they are (`index/plain.py`). No read, no notes, no tags, no summaries:
  what a user would pick instead of docstream. Its citations are the chunks it showed the model.
- `oracle` (benchmarks only): the gold sentence with one sentence either side as the only evidence — the
  ceiling of the reader, whatever retrieval does.
Both use the same answer prompt as docstream (`focus.evidence_prompt`), so modes differ only in evidence.
"""
from __future__ import annotations

import time
from typing import Any

from ..index.plain import PlainIndex, plain_chunks, sentence_pieces
from ..text.sentences import SENTENCE_END
from .focus import Citation, cite, evidence_prompt

RAG_K = 5
RAG_ROOM = 256  # tokens kept free for the prompt's own words and for the answer (twice)
_PLAIN: dict[tuple[str, str], PlainIndex] = {}  # (document sha256, pieces) -> its index (built once per process)


def plain_index(doc: Any, pieces: str = "chunks") -> PlainIndex:
    """BM25 over the body's ~2000-character `chunks` (the rag baseline) or its ~300-character `sentences`
    windows (docstream's sentence-level search), built in memory once per process."""
    key = (doc.sha256, pieces)
    if key not in _PLAIN:
        cut = plain_chunks if pieces == "chunks" else sentence_pieces
        _PLAIN[key] = PlainIndex(cut(doc, doc.body_start, doc.body_end))
    return _PLAIN[key]


def rag_prompt(doc: Any, index: Any, engine: Any, question: str, settings: Any, evidence_tokens: int
               ) -> tuple[str, list[Citation], list[dict[str, Any]], float]:
    """(prompt, citations, retrieved, retrieve ms) of plain BM25 RAG; `index`, `settings`, `evidence_tokens`
    are not used (the baseline has no index of its own making and shows whole chunks)."""
    t0 = time.perf_counter()
    plain = plain_index(doc)
    top, room = [], engine.context_length - 2 * RAG_ROOM  # whole chunks, best first, while they fit the model
    for c in plain.top(question, RAG_K):
        room -= engine.count(c.text)
        if room < 0:
            break
        top.append(c)
    ms = (time.perf_counter() - t0) * 1000
    citations = [cite(doc, c.ordinal, "", c.start, c.end) for c in top]
    retrieved = [{"chunk": cit.chunk, "rank": r, "char_start": c.start, "char_end": c.end}
                 for r, (c, cit) in enumerate(zip(top, citations), 1)]
    return evidence_prompt(doc, question, sorted(citations, key=lambda c: c.char_start)), citations, retrieved, ms


def sentence_around(text: str, start: int, end: int, neighbours: int = 1, reach: int = 800) -> tuple[int, int]:
    """The span of `text[start:end]` widened to `neighbours` whole sentences either side (within `reach` chars)."""
    lo, hi = max(0, start - reach), min(len(text), end + reach)
    before = [m.end() for m in SENTENCE_END.finditer(text, lo, start)]
    after = [m.end() for m in SENTENCE_END.finditer(text, end, hi)]
    a = before[-neighbours - 1] if len(before) > neighbours else lo
    b = after[neighbours - 1] if len(after) >= neighbours else hi
    while a < b and text[a].isspace():
        a += 1
    return a, b


def oracle_prompt(doc: Any, question: str, start: int, end: int) -> tuple[str, list[Citation]]:
    """The answer prompt with only the gold sentence `doc.text[start:end]` and its neighbours as evidence."""
    a, b = sentence_around(doc.text, start, end)
    citations = [cite(doc, -1, "", a, b)]
    return evidence_prompt(doc, question, citations), citations
