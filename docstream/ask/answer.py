"""Answering: find evidence sentences, read each alone, keep the answer the evidence supports, cite exact spans.

Design choices:
- Evidence is sentence windows (~300 characters, exact offsets), found four ways and taken in turn
  (`candidates.py`): by the question's words and the book's words related to them, by meaning (the question
  without its names, then whole), and from the passages fused from chunk text, gists and rare words
  (`retrieve.py`, `focus.rank_windows`). On the QA dev set, window-level BM25 holds the gold sentence in its
  top 3 for every lexical question; meaning and related words find paraphrased ones that share no word. A
  window that is mostly headings (a table of contents, a title page: `text.sentences.mostly_headings`) is
  never a candidate: it matches the words of many questions ("Morlocks", "Darkness") and holds no answer.
- The reader (`reader.py`, default `forks`): each candidate window alone in the answer prompt, all decoded
  as one batch; the answer kept is the first whose new words are in its window, else it is shown as a guess.
  Its window becomes citation [1], with the answer's span (`Answer.mark`).
- `reader="window"`: the earlier path — ~256 tokens of focused windows in document order in one prompt
  (`prompts/answer.txt`), streamed token by token. Summaries stay out of every answer window: on the dev set
  they cost answers.
- An `Answer` is its own stream of deltas: evidence and citations are found first, the text is generated as
  it is iterated (as `llm`'s `Response`), so the CLI prints as it comes and then the citations.
- Baselines: `rag` is plain BM25 over ~2000-character chunks in one prompt (`baselines.py`, no read needed);
  `stream` feeds the whole document through a bare sink cache and asks at the end (what plain StreamingLLM
  remembers); `truncate` keeps only the first window of the document.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import prompts
from ..backend.base import Backend
from ..errors import QuestionError
from ..text.sentences import mostly_headings
from .baselines import rag_prompt
from .candidates import by_meaning, by_words, interleave, without_names, word_weights
from .focus import Citation, cite, evidence_prompt, focus, rank_windows
from .reader import CANDIDATES, choose, phrase, read
from .retrieve import retrieve

MODES = ("docstream", "rag", "stream", "truncate")
READERS = ("forks", "window")  # docstream's reader: candidate windows read alone (`reader.py`), or one window
STOP = ("<|im_end|>", "\n\n", "<|endoftext|>")
PASSAGE_TOKENS = 2560  # retrieved chunks (about five) that the evidence sentences are chosen from
NO_EVIDENCE = ("No passage of the text matches the question's words, so there is nothing to answer from — try "
               "other words (`docstream search FILE WORDS` shows what the text holds).")
READ_TOKENS = 40  # a candidate's answer: a short sentence (the batch decodes until its longest row stops)
EVIDENCE_TOKENS = 256  # a few focused sentences: on the dev set 640 tokens of evidence answered fewer questions


@dataclass
class Answer:
    """A cited answer that is also its own stream: iterate it for the text deltas as they are generated (once),
    then read `.answer`; `citations` and `retrieved` are there from the start (evidence is found first).
    `done()` (and `to_dict()`) finish the generation when nobody iterated."""

    question: str
    answer: str = ""
    citations: list[Citation] = field(default_factory=list)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    mode: str = "docstream"
    first: bool = False  # answered from the text index before the document was read (`ask(wait=False)`)
    supported: bool | None = None  # the reader found the answer's words in its evidence (None: not checked)
    mark: tuple[int, int] | None = None  # doc char span of the answer inside citations[0] (the evidence)
    readings: list[dict[str, Any]] = field(default_factory=list)  # every candidate the reader decoded
    _deltas: Iterator[str] | None = field(default=None, repr=False, compare=False)

    def __iter__(self) -> Iterator[str]:
        if self._deltas is None:  # finished (or never streamed): the whole text at once
            if self.answer:
                yield self.answer
            return
        deltas, self._deltas = self._deltas, None
        parts: list[str] = []
        for d in deltas:
            parts.append(d)
            yield d
        self.answer = "".join(parts).strip()

    def done(self) -> Answer:
        for _ in self:
            pass
        return self

    def to_dict(self) -> dict[str, Any]:
        self.done()
        return {"question": self.question, "answer": self.answer, "mode": self.mode, "first": self.first,
                "supported": self.supported, "mark": list(self.mark) if self.mark else None,
                "citations": [c.to_dict() for c in self.citations], "retrieved": self.retrieved,
                "readings": self.readings, "timings": self.timings}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Answer:
        """The inverse of `to_dict()` (e.g. for a line of a batch's JSONL)."""
        return cls(question=d["question"], answer=d["answer"], mode=d.get("mode", "docstream"),
                   first=d.get("first", False), supported=d.get("supported"),
                   mark=tuple(d["mark"]) if d.get("mark") else None,
                   citations=[Citation(**c) for c in d.get("citations", [])], retrieved=d.get("retrieved", []),
                   readings=d.get("readings", []), timings=d.get("timings", {}))


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


def gather(doc: Any, index: Any, engine: Backend, question: str, evidence_tokens: int, reader: str
           ) -> tuple[list[Citation], list[dict[str, Any]], float]:
    """(citations, retrieved, retrieve ms): for the `forks` reader, `CANDIDATES` sentence windows by words,
    by meaning and from the fused passages, in turn; for the `window` reader, the passages' windows that fill
    `evidence_tokens`, in document order."""
    t0 = time.perf_counter()
    weights = word_weights(index, question)  # one embedding of the question's words for both searches
    r = retrieve(index, question, budget_tokens=PASSAGE_TOKENS, count_tokens=engine.count, weights=weights)
    retrieved = [{"chunk": p.chunk, "chapter": p.chapter_title, "rank": p.rank, "score": round(p.score, 4),
                  "char_start": p.char_start, "char_end": p.char_end} for p in r.passages]
    if reader == "window":
        spans = [(p.chunk, p.chapter_title, s, e)
                 for p, s, e in focus(doc.text, r.passages, question, evidence_tokens, engine.count)]
    else:  # sentence windows by words, by meaning (without the names, then whole), and from the fused passages
        ranked = [(s, e) for _, s, e in rank_windows(doc.text, r.passages, question)]
        event = without_names(question)
        lists = [[(s, e) for s, e in cands if not mostly_headings(doc.text[s:e])]  # no table of contents
                 for cands in (by_words(doc, weights, CANDIDATES),
                               by_meaning(index, event, CANDIDATES) if event and event != question else [],
                               by_meaning(index, question, CANDIDATES), ranked)]
        spans = []
        for s, e in interleave(lists, CANDIDATES):
            ch = index.chunk_at(s)
            spans.append((ch.ordinal if ch else -1, ch.chapter_title if ch else "", s, e))
        retrieved += [{"chunk": c, "chapter": t, "rank": None, "sentences": True, "char_start": s, "char_end": e}
                      for c, t, s, e in spans]
    citations = [cite(doc, c, t or "", s, e) for c, t, s, e in spans]
    return citations, retrieved, (time.perf_counter() - t0) * 1000


def answer(doc: Any, index: Any, engine: Backend, question: str, settings: Any, mode: str = "docstream",
           max_tokens: int = 64, evidence_tokens: int = EVIDENCE_TOKENS, reader: str = "forks") -> Answer:
    """The `Answer` to a checked question (`check_question`): evidence retrieved now (`index` may be closed once
    this returns), text generated as the answer is iterated."""
    assert mode in MODES and reader in READERS, (mode, reader)
    t0 = time.perf_counter()
    ans = Answer(question=question, mode=mode)
    retrieve_ms = 0.0
    if mode == "docstream":
        ans.citations, ans.retrieved, retrieve_ms = gather(doc, index, engine, question, evidence_tokens, reader)
        if not ans.citations:  # no passage shares a word with the question: say so rather than guess
            deltas: Iterator[str] = iter([NO_EVIDENCE])
        elif reader == "forks":
            deltas = _lazy(lambda: _read(doc, engine, ans, max_tokens))
        else:  # No summaries in the window: on the QA dev set they cost answers (`docstream bench qa`, README).
            user = evidence_prompt(doc, question, ans.citations)
            deltas = engine.complete(prompts.get("system").render(), user, max_tokens, stop=STOP)
    elif mode == "rag":
        user, ans.citations, ans.retrieved, retrieve_ms = rag_prompt(doc, None, engine, question, settings, 0)
        deltas = (engine.complete(prompts.get("system").render(), user, max_tokens, stop=STOP) if ans.citations
                  else iter([NO_EVIDENCE]))
    else:
        deltas = _lazy(lambda: _bare(doc, engine, question, settings, mode, max_tokens, STOP))

    def timed() -> Iterator[str]:
        t1 = time.perf_counter()
        yield from deltas
        t2 = time.perf_counter()
        ans.timings = {"retrieve_ms": round(retrieve_ms, 1), "generate_ms": round((t2 - t1) * 1000, 1),
                       "total_ms": round((t2 - t0) * 1000, 1)}

    ans._deltas = timed()
    return ans


def _lazy(make: Any) -> Iterator[str]:
    yield make()


def _read(doc: Any, engine: Backend, ans: Answer, max_tokens: int) -> str:
    """The `forks` reader (`reader.py`): every candidate window read alone, the supported answer chosen; its
    window becomes the first citation, with the answer's span in it (`mark`)."""
    readings = read(engine, doc, ans.question, ans.citations, min(max_tokens, READ_TOKENS), STOP)
    best = choose(readings, ans.question)
    ans.supported, ans.mark = best.supported, best.mark
    ans.citations = [best.citation, *(c for c in ans.citations if c is not best.citation)]
    ans.readings = [{"answer": r.text, "confidence": None if r.confidence is None else round(r.confidence, 3),
                     "supported": r.supported, "added": r.added, "char_start": r.citation.char_start,
                     "char_end": r.citation.char_end} for r in readings]
    return phrase(best)


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
