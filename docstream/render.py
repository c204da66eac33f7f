"""Text, Markdown and JSON renderings of a document's summaries and of citations (shared by the CLI and the API)."""
from __future__ import annotations

import json
from typing import Any


def summary_dict(doc: Any, length: str = "medium", words: int | None = None) -> dict[str, Any]:
    """Every level with spans: book, chapters (with char and line ranges), notes."""
    lines = doc.chapter_lines()
    with doc._index() as ix:
        notes = ix.notes()
    return {
        "title": doc.title,
        "book": doc.summary("book", length=length, words=words),
        "chapters": [{"chapter": s.chapter + 1, "title": ch.title, "summary": s.text,
                      "char_start": ch.char_start, "char_end": ch.char_end,
                      "line_start": ch.line_start, "line_end": ch.line_end,
                      "chunks": [s.chunk_start, s.chunk_end], "method": s.method}
                     for ch, s in lines],
        "notes": [{"chunk": n.chunk, "chapter": (n.chapter or 0) + 1, "gist": n.gist, "tags": n.tags,
                   "char_start": n.char_start, "char_end": n.char_end, "line_start": n.line_start,
                   "line_end": n.line_end, "method": n.method} for n in notes],
    }


def render_summary(doc: Any, level: str, fmt: str, length: str = "medium", words: int | None = None) -> str:
    if fmt == "json":
        return json.dumps(summary_dict(doc, length, words), ensure_ascii=False, indent=2)
    if fmt == "md":
        d = summary_dict(doc, length, words)
        out = [f"# {d['title']}", "", d["book"], ""]
        for c in d["chapters"]:
            out += [f"## {c['title']}", "", c["summary"], ""]
        if level == "chunk":
            out += ["## Notes", ""] + [f"- ({n['line_start']}-{n['line_end']}) {n['gist']}" for n in d["notes"]]
        return "\n".join(out).rstrip() + "\n"
    if level == "book":
        return doc.summary("book", length=length, words=words)
    if level == "chapter":
        return "\n".join(f"{title}: {s.text}" for title, s in doc.summary("chapter"))
    return "\n".join(f"#{n.chunk + 1} [{n.chapter_title}] {n.gist}" for n in doc.summary("chunk"))


def citation_line(i: int, c: Any, mark: tuple[int, int] | None = None, width: int = 240) -> str:
    """`  [i] chapter — where; lines a-b, chars s-e: "quote"`, the quote cut to about `width` characters around
    the answer's span `mark` (doc offsets inside the quote), which is shown as «span»."""
    s, e = c.char_start, c.char_end
    text = c.quote
    marked = bool(mark) and s <= mark[0] < mark[1] <= e
    if marked:
        a, b = mark[0] - s, mark[1] - s
        text = f"{text[:a]}\u00ab{text[a:b]}\u00bb{text[b:]}"
    quote = " ".join(text.split())
    if len(quote) > width:
        at = quote.find("\u00ab") if marked else -1  # nothing marked: cut from the start
        lo = max(0, min(at - width // 3, len(quote) - width))
        quote = ("..." if lo else "") + quote[lo:lo + width - 3].strip() + "..."
    where = f"{c.where}; " if c.where else ""
    return f"  [{i}] {c.chapter} — {where}lines {c.line_start}-{c.line_end}, chars {s}-{e}: \"{quote}\""
