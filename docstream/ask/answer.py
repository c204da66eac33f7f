"""Answering: retrieve evidence from the index, put it back into the window, generate, cite exact spans.

Design choices:
- Retrieval (`retrieve.py`) ranks whole chunks; here the best chunks are cut into sentence-aligned windows
  (~`span_tokens` each, exact char offsets) and the windows that share the most (rare) words with the
  question fill the evidence budget. Small models answer far better from a few focused sentences than from
  pages; citations then point at the sentences actually used.
- The window at answer time: [sinks | the question first | book + chapter summaries | evidence in document
  order | the question again]. Prompt text lives in `prompts/answer.txt`.
- Every citation's quote is `doc.text[char_start:char_end]` — an exact substring of the decoded file.
- Baselines: `stream` feeds the whole document through a bare sink cache and asks at the end (what plain
  StreamingLLM remembers); `truncate` keeps only the first window of the document.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import prompts
from ..backend.base import Backend
from ..errors import QuestionError

MODES = ("docstream", "stream", "truncate")
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[a-z]+)?")
_STOP = set("""a an the of to in on at by for with from and or but not is are was were be been being do does did
what which who whom whose when where why how that this these those it its he she they them his her their i you we
me my your our us as if than then so such there here any all some no yes about into over under again very can could
would should will shall may might must has have had tell say said""".split())
_SENT_END = re.compile(r"(?<=[.!?\"”’])\s+|\n\s*\n")


@dataclass
class Citation:
    chunk: int
    chapter: str
    char_start: int
    char_end: int
    line_start: int
    line_end: int
    quote: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[Citation] = field(default_factory=list)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    mode: str = "docstream"

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "mode": self.mode,
                "citations": [c.to_dict() for c in self.citations], "retrieved": self.retrieved,
                "timings": self.timings}


def terms(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1]


def check_question(question: str, engine: Backend, window: int) -> str:
    q = " ".join(question.split())
    if not q:
        raise QuestionError("the question is empty — ask something, e.g. docstream ask book.txt \"who is Filby?\"")
    if not any(ch.isalnum() for ch in q):  # any script: "Кто такой Филби?" and "誰ですか" are questions
        raise QuestionError(f"the question {q!r} has no words, only punctuation — ask in words, e.g. "
                            "\"who is Filby?\"")
    if engine is not None and engine.count(q) > window // 4:
        raise QuestionError(f"the question is {engine.count(q)} tokens long; keep it under {window // 4} tokens "
                            "(a quarter of the window)")
    return q


def sentence_windows(text: str, base: int, span_chars: int) -> list[tuple[int, int]]:
    """Split text into consecutive sentence-aligned windows of about span_chars; absolute (start, end)."""
    bounds = [0] + [m.end() for m in _SENT_END.finditer(text)] + [len(text)]
    out: list[tuple[int, int]] = []
    a = 0
    for b in bounds[1:]:
        if b - a >= span_chars or b == len(text):
            s, e = a, b
            while s < e and text[s].isspace():
                s += 1
            while e > s and text[e - 1].isspace():
                e -= 1
            if e > s:
                out.append((base + s, base + e))
            a = b
    return out


def focus(doc_text: str, passages: list[Any], question: str, budget_tokens: int, count: Any,
          span_chars: int = 480) -> list[tuple[Any, int, int]]:
    """Pick the sentence windows of the retrieved passages that best match the question, within budget."""
    q = set(terms(question))
    cands: list[tuple[Any, int, int, Counter[str]]] = []
    for p in passages:
        for s, e in sentence_windows(doc_text[p.char_start:p.char_end], p.char_start, span_chars):
            cands.append((p, s, e, Counter(terms(doc_text[s:e]))))
    if not cands:
        return []
    df = Counter(t for *_, c in cands for t in set(c) if t in q)
    n = len(cands)

    def score(item: tuple[Any, int, int, Counter[str]]) -> float:
        p, s, e, c = item
        lexical = sum(math.log(1 + n / df[t]) * (1 + math.log(c[t])) for t in q if c[t])
        return lexical + 1.0 / (1 + getattr(p, "rank", 0))

    kept: list[tuple[Any, int, int]] = []
    used = 0
    for p, s, e, c in sorted(cands, key=score, reverse=True):
        t = count(doc_text[s:e])
        if used + t > budget_tokens:
            continue
        kept.append((p, s, e))
        used += t
    return sorted(kept, key=lambda x: x[1])


def _line(doc: Any, offset: int) -> int:
    return doc.line_of(offset)


def build_prompt(doc: Any, index: Any, engine: Backend, question: str, settings: Any, evidence_tokens: int
                 ) -> tuple[str, list[Citation], list[dict[str, Any]], float]:
    from .retrieve import retrieve

    t0 = time.perf_counter()
    r = retrieve(index, question, budget_tokens=evidence_tokens * 4, count_tokens=engine.count)
    spans = focus(doc.text, r.passages, question, evidence_tokens, engine.count)
    retrieve_ms = (time.perf_counter() - t0) * 1000
    citations = [Citation(chunk=p.chunk, chapter=p.chapter_title or "", char_start=s, char_end=e,
                          line_start=_line(doc, s), line_end=_line(doc, max(s, e - 1)), quote=doc.text[s:e])
                 for p, s, e in spans]
    evidence = "\n\n".join(f"[{i + 1}] ({c.chapter}, lines {c.line_start}-{c.line_end}) "
                           f"{' '.join(c.quote.split())}" for i, c in enumerate(citations))
    summary = r.book_summary or "(none)"
    chapter_bits = [s for s in (r.chapter_summaries or [])][:2]
    if chapter_bits:
        summary += " " + " ".join(chapter_bits)
    user = prompts.get("answer").render(question=question, title=doc.title, summary=summary,
                                        evidence=evidence or "(no passage matched the question)")
    retrieved = [{"chunk": p.chunk, "chapter": p.chapter_title, "rank": p.rank, "score": round(p.score, 4),
                  "char_start": p.char_start, "char_end": p.char_end} for p in r.passages]
    return user, citations, retrieved, retrieve_ms


def answer_stream(doc: Any, index: Any, engine: Backend, question: str, settings: Any, mode: str = "docstream",
                  max_tokens: int = 64, evidence_tokens: int = 640) -> Iterator[str | Answer]:
    """Yield text deltas, then the finished `Answer` as the last item."""
    assert mode in MODES, mode
    t0 = time.perf_counter()
    q = check_question(question, engine, settings.window)
    citations: list[Citation] = []
    retrieved: list[dict[str, Any]] = []
    retrieve_ms = 0.0
    stop = ("<|im_end|>", "\n\n", "<|endoftext|>")
    if mode == "docstream":
        user, citations, retrieved, retrieve_ms = build_prompt(doc, index, engine, q, settings, evidence_tokens)
        deltas = engine.complete(prompts.get("system").render(), user, max_tokens, stop=stop)
    else:
        deltas = iter([_bare(doc, engine, q, settings, mode, max_tokens, stop)])
    t1 = time.perf_counter()
    parts: list[str] = []
    for d in deltas:
        parts.append(d)
        yield d
    t2 = time.perf_counter()
    yield Answer(question=q, answer="".join(parts).strip(), citations=citations, retrieved=retrieved, mode=mode,
                 timings={"retrieve_ms": round(retrieve_ms, 1), "generate_ms": round((t2 - t1) * 1000, 1),
                          "total_ms": round((t2 - t0) * 1000, 1)})


def _bare(doc: Any, engine: Backend, question: str, settings: Any, mode: str, max_tokens: int,
          stop: tuple[str, ...]) -> str:
    """The baselines: no index. The document (or its first window) in a bare sink cache, question at the end."""
    stream = engine.stream(sinks=settings.sinks, window=settings.window, max_pinned=settings.max_pinned)
    intro = prompts.get("read_user").render(title=doc.title)
    stream.start(prompts.get("system").render(), intro)
    body = doc.text[doc.body_start:doc.body_end]
    prompt = prompts.get("answer_bare").render(question=question)
    room = settings.window - engine.count(prompt) - max_tokens - 8
    if mode == "truncate":
        ids = engine.encode(body)[:room]
        stream.feed(engine.tokenizer.decode(ids))
    else:
        step = settings.chunk_tokens * 4
        for i in range(0, len(body), step):
            stream.feed(body[i:i + step])
    return stream.aside(prompt, max_tokens, stop=stop)
