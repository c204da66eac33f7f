"""Chapter lines that say what happens (`docstream bench chapters`): content of `--level chapter` per book.

Design choices:
- Through the public API only: `docstream.open(path).ensure_read()` (reads the book if its index is not done,
  progress on stderr), then `summary(level="chapter")`, exactly what `docstream summarize --level chapter`
  prints. Chapters found are the index's chapters; a chapter "has a line" when its stored summary is not empty.
- Every sentence of every line is measured against its own chapter's text (`summarize.content.measure`):
  grounding (share of content words found in the chapter; the book's names left out, found in the whole book)
  and vacuity (a meta phrase, or grounding < 0.5). A line is vacuous when one of its sentences is.
- Per book: chapters found, chapters with a line, vacuous lines %, vacuous sentences %, mean grounding, lines
  made by the extractive fallback (the `method` of the stored row), lines that narrate (`content.narrates`:
  someone does something, in the past tense); a total row over all books. `--json`
  adds one row per line (book, chapter, title, line, method, per-sentence measures).
- Default files: the six novels of `../shared/corpus/gutenberg/`; `--books a,b` keeps the files whose name
  contains one of the parts (as `bench qa`).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..summarize import content

DEFAULT_CORPUS = Path("../shared/corpus/gutenberg")


def book_files(files: list[Path] | None, books: tuple[str, ...] = ()) -> list[Path]:
    """The files to measure: `files`, or the default corpus's *.txt, filtered by `books` name parts."""
    paths = list(files) if files else sorted(DEFAULT_CORPUS.glob("*.txt"))
    if not paths:
        raise InputError(f"no books in {DEFAULT_CORPUS} — pass the book files to measure")
    if books:
        paths = [p for p in paths if any(b in p.name for b in books)]
        if not paths:
            raise InputError(f"no book file name contains {', '.join(books)} — pass a part of a file name")
    return paths


def measure_book(doc: Any) -> dict[str, Any]:
    """The chapter lines of a read document, each sentence measured against its chapter's text."""
    with doc._index() as ix:
        chapters = {c.index: c for c in ix.chapters()}
    stored = {s.chapter: s for _, s in doc.chapter_lines()}
    text = doc.source.text
    book = doc.source.body or text
    names = content.profile(book).names
    lines = []
    for idx, ch in sorted(chapters.items()):
        s = stored.get(idx)
        line = (s.text if s else "").strip()
        source = text[ch.char_start:ch.char_end]
        rows = content.measure(line, source, names) if line else []
        lines.append({"chapter": idx + 1, "title": ch.title, "line": line,
                      "method": getattr(s, "method", None) or "model" if s else None,
                      "vacuous": any(r["vacuous"] for r in rows), "narrates": content.narrates(line, names),
                      "sentences": rows})
    return {"chapters": len(chapters), "lines": lines}


def _book_row(name: str, lines: list[dict]) -> dict[str, Any]:
    with_line = [x for x in lines if x["line"]]
    sents = [r for x in with_line for r in x["sentences"]]
    agg = content.summarize_rows(sents)
    return {"book": name, "chapters": len(lines), "with_line": len(with_line),
            "vacuous_lines": round(sum(x["vacuous"] for x in with_line) / len(with_line), 4) if with_line else None,
            "vacuous_sentences": agg["vacuous"], "grounding": agg["grounding"], "sentences": agg["sentences"],
            "extractive": sum(1 for x in with_line if x["method"] == "extractive"),
            "narrates": sum(1 for x in with_line if x["narrates"])}


def run(files: list[Path] | None = None, books: tuple[str, ...] = (), model: str | None = None,
        window: int = 2048, progress: bool = True, dtype: str = "auto") -> dict[str, Any]:
    """Read (if needed) and measure every book; returns {books: [per-book row], total, lines, seconds}."""
    import docstream

    t0 = time.perf_counter()
    res: dict[str, Any] = {"model": None, "window": window, "books": [], "lines": []}
    all_lines: list[dict] = []
    for path in book_files(files, books):
        doc = docstream.open(path, model=model, window=window, dtype=dtype)
        res["model"] = doc.model
        if progress:
            print(f"{path.name}: {'index found' if doc.is_read() else 'reading…'}", file=sys.stderr, flush=True)
        doc.ensure_read(progress=progress)
        got = measure_book(doc)
        res["books"].append(_book_row(path.stem, got["lines"]))
        for x in got["lines"]:
            res["lines"].append({"book": path.stem, **x})
        all_lines += got["lines"]
    res["total"] = _book_row("total", all_lines)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def format_table(res: dict[str, Any]) -> str:
    head = (f"{'book':<28}{'chapters':>9}{'lines':>7}{'vacuous':>10}{'vac. sent':>11}{'grounding':>11}"
            f"{'extractive':>12}{'narrates':>10}")
    out = [f"chapters: {res['model']}, window {res['window']}; a line is vacuous when one of its sentences talks "
           "about the text or has grounding < 0.5", head]
    for b in [*res["books"], res["total"]]:
        g = "-" if b["grounding"] is None else f"{b['grounding']:.3f}"
        out.append(f"{b['book'][:27]:<28}{b['chapters']:>9}{b['with_line']:>7}{_pct(b['vacuous_lines']):>10}"
                   f"{_pct(b['vacuous_sentences']):>11}{g:>11}{b['extractive']:>12}{b['narrates']:>10}")
    out.append("")
    for x in res["lines"]:
        mark = "VACUOUS " if x["vacuous"] else ""
        out.append(f"{x['book'][:20]} {x['title']}: {mark}[{x['method'] or 'none'}] {x['line'] or '(no line)'}")
    return "\n".join(out)


def print_report(res: dict[str, Any], as_json: bool = False) -> None:
    print(json.dumps(res, indent=2, ensure_ascii=False) if as_json else format_table(res))
