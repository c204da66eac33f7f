"""Summaries: rolling (while reading), per chapter, and for the whole book — hierarchical, never truncated.

Design choices:
- Chapter summaries are made from the chapter's notes; the book summary from the chapter summaries.
- `reduce()` is the one hierarchical merge: it packs consecutive texts into groups whose *whole prompt* fits
  the window (prompt + output ≤ window + pinned budget), summarises each group, and repeats on the results
  until one text remains. No input is ever cut; a single text too long for a prompt is an assertion failure
  (notes and summaries are bounded by their generation caps, so it cannot happen).
- Lengths: `short|medium|long` map to word targets; `--words N` overrides. The book summary stored by the
  reading pass is the `medium` one; other lengths are made on demand from the stored chapter summaries.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from . import prompts

LENGTHS = {"short": 60, "medium": 120, "long": 250}


def _system() -> str:
    return prompts.get("system").render()


def _tokens_for_words(words: int) -> int:
    return int(words * 1.6) + 16


def rolling(engine: Any, title: str, summary: str, notes: list[str], position: str, settings: Any) -> str:
    user = prompts.get("rolling_summary").render(title=title, position=position, summary=summary,
                                                 notes="\n".join(f"- {n}" for n in notes))
    out = engine.complete_text(_system(), user, settings.summary_tokens, stop=("<|im_end|>", "\n\n"))
    return " ".join(out.split()) or summary


def reduce(engine: Any, texts: list[str], render: Callable[[list[str]], str], max_new_tokens: int,
           window: int, on_merge: Callable[[int, int], None] | None = None) -> str:
    """Summarise `texts` hierarchically so that every prompt + output fits `window` tokens."""
    assert texts, "nothing to summarise"
    limit = window - max_new_tokens
    level = list(texts)
    while True:
        groups: list[list[str]] = [[]]
        for t in level:
            if groups[-1] and engine.count(render(groups[-1] + [t])) > limit:
                groups.append([])
            groups[-1].append(t)
        for g in groups:
            n = engine.count(render(g))
            assert n <= limit, f"a single text of {n} tokens does not fit a merge window of {limit}"
        outs = []
        for g in groups:
            prompt = render(g)
            if on_merge:
                on_merge(engine.count(prompt), max_new_tokens)
            out = engine.complete_text(_system(), prompt, max_new_tokens, stop=("<|im_end|>",))
            outs.append(" ".join(out.split()) or " ".join(g)[:500])
        if len(outs) == 1:
            return outs[0]
        assert len(outs) < len(level), "a merge level must shrink"
        level = outs


def chapter_summary(engine: Any, title: str, chapter: str, notes: list[str], window: int) -> str:
    def render(items: list[str]) -> str:
        return prompts.get("chapter_summary").render(title=title, chapter=chapter,
                                                     notes="\n".join(f"- {n}" for n in items))
    return reduce(engine, notes, render, 80, window)


def book_summary(engine: Any, title: str, chapter_summaries: list[str], words: int, window: int) -> str:
    def render(items: list[str]) -> str:
        return prompts.get("merge_summary").render(title=title, words=words,
                                                   summaries="\n".join(f"- {s}" for s in items))
    return reduce(engine, chapter_summaries, render, _tokens_for_words(words), window)


def build_hierarchy(index: Any, engine: Any, title: str, chapters: list[Any], settings: Any
                    ) -> Iterator[tuple[str, str, str]]:
    """Make the missing chapter summaries, then the book summary. Yields (kind, chapter title, text)."""
    window = settings.window + settings.max_pinned
    have = {s.chapter for s in index.summaries("chapter")}
    notes = index.notes()
    by_chapter: dict[int, list[str]] = {}
    for n in notes:
        by_chapter.setdefault(n.chapter, []).append(n.gist)
    made = False
    for ch in chapters:
        if ch.index in have or ch.index not in by_chapter:
            continue
        chunk_ids = [n.chunk for n in notes if n.chapter == ch.index]
        text = chapter_summary(engine, title, ch.title, by_chapter[ch.index], window)
        index.add_summary("chapter", text, min(chunk_ids), max(chunk_ids), chapter=ch.index)
        made = True
        yield ("chapter", ch.title, text)
    if made or not index.summaries("book"):
        chs = index.summaries("chapter")
        text = book_summary(engine, title, [s.text for s in chs], LENGTHS["medium"], window)
        index.add_summary("book", text, 0, max(n.chunk for n in notes))
        yield ("book", "", text)
