"""Evidence, cut to sentences and cited: from retrieved passages to the exact spans put in the answer window.

Design choices:
- Retrieval (`retrieve.py`) ranks whole chunks; here the best chunks are cut into sentence-aligned windows
  (~`span_chars` = 300 each, exact char offsets: a sentence or two) and the windows that share the most
  (rare) words with the question fill the evidence budget. Small models answer far better from a few focused sentences than from
  pages; citations then point at the sentences actually used.
- Every citation's quote is `doc.text[char_start:char_end]` — an exact substring of the decoded file (of the
  extracted text for EPUB, HTML and PDF, where `where`/`position` add the page and line or the spine item).
- The answer prompt (`evidence_prompt`) is the same for every mode that brings evidence (docstream, rag, the
  benchmark's oracle), so modes differ only in which evidence they find.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from .. import prompts
from ..index.search import STOP_WORDS
from ..text.sentences import sentence_windows

WORD = re.compile(r"[A-Za-z0-9]+(?:'[a-z]+)?")


@dataclass
class Citation:
    chunk: int
    chapter: str
    char_start: int
    char_end: int
    line_start: int
    line_end: int
    quote: str
    where: str | None = None  # in the original: "p. 37, line 12" (PDF), "chapter3.xhtml+1234" (EPUB spine item)
    position: dict[str, Any] | None = None  # the same as data: {"page", "line"} or {"item", "offset"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def terms(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text) if w.lower() not in STOP_WORDS and len(w) > 1]


def rank_windows(doc_text: str, passages: list[Any], question: str, span_chars: int = 300
                 ) -> list[tuple[Any, int, int]]:
    """The sentence windows of the retrieved passages, best match to the question first: rare question words
    (log-scaled counts), ties broken by the passage's rank."""
    q = set(terms(question))
    cands: list[tuple[Any, int, int, Counter[str]]] = []
    for p in passages:
        for s, e in sentence_windows(doc_text[p.char_start:p.char_end], p.char_start, span_chars):
            cands.append((p, s, e, Counter(terms(doc_text[s:e]))))
    df = Counter(t for *_, c in cands for t in set(c) if t in q)
    n = len(cands)

    def score(item: tuple[Any, int, int, Counter[str]]) -> float:
        p, s, e, c = item
        lexical = sum(math.log(1 + n / df[t]) * (1 + math.log(c[t])) for t in q if c[t])
        return lexical + 1.0 / (1 + getattr(p, "rank", 0))

    return [(p, s, e) for p, s, e, _ in sorted(cands, key=score, reverse=True)]


def focus(doc_text: str, passages: list[Any], question: str, budget_tokens: int, count: Any,
          span_chars: int = 300) -> list[tuple[Any, int, int]]:
    """The best sentence windows of the retrieved passages (`rank_windows`) within budget, in document order."""
    kept: list[tuple[Any, int, int]] = []
    used = 0
    for p, s, e in rank_windows(doc_text, passages, question, span_chars):
        t = count(doc_text[s:e])
        if used + t > budget_tokens:
            continue
        kept.append((p, s, e))
        used += t
    return sorted(kept, key=lambda x: x[1])


def _line(doc: Any, offset: int) -> int:
    return doc.line_of(offset)


def cite(doc: Any, chunk: int, chapter: str, s: int, e: int) -> Citation:
    """A citation of `doc.text[s:e]`: chapter, 1-based lines, the exact quote and, for a PDF or EPUB, where the
    span starts in the original (page and line, or spine item and offset)."""
    position = doc.position(s) if hasattr(doc, "position") else None
    return Citation(chunk=chunk, chapter=chapter, char_start=s, char_end=e, line_start=_line(doc, s),
                    line_end=_line(doc, max(s, e - 1)), quote=doc.text[s:e], where=doc.where(s) if position else None,
                    position=position)


def evidence_prompt(doc: Any, question: str, citations: list[Citation], summary: str = "(none)",
                    labels: bool = True) -> str:
    """The answer prompt: the question, the summary, the cited evidence in order, the question again.
    `labels=False` leaves out the "[1] (chapter, lines …)" labels (the model copies them into its answer)."""
    evidence = "\n\n".join((f"[{i + 1}] ({c.chapter}, lines {c.line_start}-{c.line_end}) " if labels else "")
                            + " ".join(c.quote.split()) for i, c in enumerate(citations))
    return prompts.get("answer").render(question=question, title=doc.title, summary=summary,
                                        evidence=evidence or "(no passage matched the question)")
