"""Detail questions over whole novels (`docstream bench qa`): every mode on the same books and indexes.

Design choices:
- The dev set (`samples/qa/dev.jsonl`): one fact stated once, between 15 % and 85 % of a novel, with its gold
  answer strings and the exact char span of its sentence; `kind` is `lexical` (shares the sentence's words) or
  `paraphrase` (shares none but names). `tests/test_qa_data.py` checks every span against the text.
- Modes, per question: `docstream` (the index: sentence-level search plus fused passages, read by `--reader`:
  `forks` (default) or `window`), `rag` (plain BM25 over ~2000-character chunks, top 5, one prompt: the
  baseline a user would build), `oracle` (the gold sentence and its neighbours as the only evidence, through
  the same reader: the reader's ceiling), `truncate` (the first window) and `stream`
  (bare StreamingLLM: the whole book through the sink cache, then the question — slow: once per question).
- Figures need no judge. Retrieval recall: the gold sentence lies inside the evidence the mode retrieved
  (at least half its characters in one retrieved span; docstream: its passages and candidate windows).
  Citation recall: the same of the citations shown to the user. Accuracy: a gold answer string occurs in the
  answer, word-bounded, case-insensitive, numbers in words or digits alike ("3 inches" is "three inches").
  Latency: seconds per warm `ask`.
- `--no-answer` skips generation: retrieval and citation recall of every mode in seconds once books are read.
- Books are read (or their indexes reused) before any question is timed; `read_seconds` says what reading cost.
"""
from __future__ import annotations

import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InputError, SettingsError
from ..text.numbers import numerals

MODES = ("docstream", "rag", "oracle", "truncate", "stream")
DEFAULT_MODES = ("docstream", "rag", "oracle", "truncate")
DEFAULT_DATA = "samples/qa/dev.jsonl"
DEFAULT_CORPUS = "../shared/corpus/gutenberg"
KINDS = ("lexical", "paraphrase")


def load_questions(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no QA data at {p} — pass --data samples/qa/dev.jsonl (run from the repository)")
    rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        missing = {"id", "book", "question", "answers", "kind", "char_start", "char_end"} - set(r)
        if missing:
            raise InputError(f"{p}: question {r.get('id', '?')} lacks {', '.join(sorted(missing))}")
    return rows


def book_path(corpus: Path, book: str) -> Path:
    for cand in (corpus / book, Path(book)):
        if cand.is_file():
            return cand
    raise InputError(f"book {book} is not in {corpus} — pass --corpus DIR holding the dev set's books")


def covered(spans: list[tuple[int, int]], start: int, end: int, share: float = 0.5) -> bool:
    """Does one of `spans` hold at least `share` of the characters of [start, end)?"""
    n = max(1, end - start)
    return any((min(b, end) - max(a, start)) / n >= share for a, b in spans)


def correct(answer: str, golds: list[str]) -> bool:
    """Is a gold string in the answer, word-bounded, case-insensitive, numbers in words or digits alike?"""
    return any(re.search(rf"(?<!\w){re.escape(numerals(g))}(?!\w)", numerals(answer)) for g in golds)


def _cell(doc: Any, q: dict[str, Any], mode: str, generate: bool, max_tokens: int, reader: str = "forks"
          ) -> dict[str, Any]:
    from .. import prompts
    from ..ask.answer import STOP
    from ..ask.baselines import oracle_prompt
    from ..ask.reader import choose, phrase, read

    s, e = q["char_start"], q["char_end"]
    assert doc.source.text[s:e] == q["evidence"], f"{q['id']}: the gold span does not match the book"
    t0 = time.perf_counter()
    if mode == "oracle":  # the gold window through docstream's own reader: its ceiling
        user, cites = oracle_prompt(doc.source, q["question"], s, e)
        retrieved = citations = [(c.char_start, c.char_end) for c in cites]
        text, supported = "", None
        if generate and reader == "forks":
            best = choose(read(doc.engine, doc.source, q["question"], cites, max_tokens, STOP), q["question"])
            text, supported = phrase(best), best.supported
        elif generate:
            text = doc.engine.complete_text(prompts.get("system").render(), user, max_tokens, stop=STOP)
    elif mode in ("stream", "truncate") and not generate:
        return {"id": q["id"], "mode": mode, "kind": q["kind"], "retrieved": False, "cited": False}
    else:
        ans = doc.ask(q["question"], mode=mode, max_tokens=max_tokens, stream=True, reader=reader)
        retrieved = [(r["char_start"], r["char_end"]) for r in ans.retrieved]
        text = ans.done().answer if generate else ""
        citations = [(c.char_start, c.char_end) for c in ans.citations]
        supported = ans.supported
    return {"id": q["id"], "mode": mode, "kind": q["kind"], "question": q["question"], "answer": text,
            "gold": q["answers"], "retrieved": covered(retrieved, s, e), "cited": covered(citations, s, e),
            "correct": correct(text, q["answers"]) if generate else None,
            "supported": supported if generate else None, "seconds": round(time.perf_counter() - t0, 2)}


def run(data: str | Path = DEFAULT_DATA, corpus: str | Path = DEFAULT_CORPUS, modes: tuple[str, ...] = DEFAULT_MODES,
        books: tuple[str, ...] = (), model: str | None = None, window: int = 2048, generate: bool = True,
        max_tokens: int = 48, out: str | Path | None = None, progress: bool = True, reader: str = "forks",
        dtype: str = "auto") -> dict[str, Any]:
    import docstream

    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SettingsError(f"--modes {','.join(modes)}: use a subset of {','.join(MODES)}")
    qs = load_questions(data)
    if books:
        qs = [q for q in qs if any(b in q["book"] for b in books)]
        if not qs:
            raise InputError(f"no question is about {', '.join(books)} — pass a part of a book's file name")
    by_book: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for q in qs:
        by_book[q["book"]].append(q)
    cells: list[dict[str, Any]] = []
    reads: dict[str, float] = {}
    for book, bqs in by_book.items():
        doc = docstream.open(book_path(Path(corpus), book), model=model, window=window, dtype=dtype)
        t0 = time.perf_counter()
        if "docstream" in modes:
            doc.ensure_read(progress=progress)
            doc.embed()  # what an index read by an older version lacks, before any question is timed
        reads[book] = round(time.perf_counter() - t0, 1)
        for mode in modes:
            for q in bqs:
                cells.append(_cell(doc, q, mode, generate, max_tokens, reader))
                if progress:
                    c = cells[-1]
                    mark = "" if c.get("correct") is None else (" right" if c["correct"] else " wrong")
                    print(f"{q['id']} {mode:9} retrieved={c['retrieved']!s:5} cited={c['cited']!s:5}{mark}",
                          file=sys.stderr)
    res = {"data": str(data), "modes": list(modes), "questions": len(qs), "books": len(by_book),
           "generate": generate, "reader": reader, "model": model or "smollm2-135m", "window": window,
           "read_seconds": reads,
           "summary": summarize(cells, modes), "cells": cells}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return res


def summarize(cells: list[dict[str, Any]], modes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per mode: retrieval recall, citation recall, accuracy (all, and per kind), mean seconds."""
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        mine = [c for c in cells if c["mode"] == mode]
        row: dict[str, Any] = {"n": len(mine)}
        for metric in ("retrieved", "cited", "correct"):
            for kind in (None, *KINDS):
                sel = [c[metric] for c in mine if kind is None or c["kind"] == kind]
                sel = [v for v in sel if v is not None]
                key = metric if kind is None else f"{metric}_{kind}"
                row[key] = round(sum(sel) / len(sel), 3) if sel else None
        checked = [c for c in mine if c.get("supported") is not None]  # the forks reader's own verdicts
        row["supported"] = round(sum(c["supported"] for c in checked) / len(checked), 3) if checked else None
        backed = [c["correct"] for c in checked if c["supported"]]
        row["correct_when_supported"] = round(sum(backed) / len(backed), 3) if backed else None
        secs = [c["seconds"] for c in mine if "seconds" in c]
        row["seconds"] = round(sum(secs) / len(secs), 2) if secs else None
        out[mode] = row
    return out


def print_report(res: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in res.items() if k != "cells"}, ensure_ascii=False, indent=2))
        return

    def f(v: Any) -> str:
        return "—" if v is None else f"{v:.2f}"

    print(f"{res['questions']} questions over {res['books']} books ({res['model']}, window {res['window']})")
    print(f"{'mode':10} {'retrieval':>9} {'lex':>5} {'para':>5} {'cited':>6} {'correct':>7} {'lex':>5} {'para':>5}"
          f" {'s/ask':>6} {'supp':>5} {'right|supp':>10}")
    for mode, r in res["summary"].items():
        print(f"{mode:10} {f(r['retrieved']):>9} {f(r['retrieved_lexical']):>5} {f(r['retrieved_paraphrase']):>5} "
              f"{f(r['cited']):>6} {f(r['correct']):>7} {f(r['correct_lexical']):>5} {f(r['correct_paraphrase']):>5}"
              f" {f(r['seconds']):>6} {f(r.get('supported')):>5} {f(r.get('correct_when_supported')):>10}")
