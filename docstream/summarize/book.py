"""The book summary (parts in order) and the summary hierarchy the reading pass stores.

Design choices:
- The book summary is *parts in order*: its inputs (the chapter summaries, or the notes of a book with fewer
  than 3 chapters) are split into consecutive runs of about equal length, one per `PART_WORDS` words asked
  for, and each run is told in a sentence started "In this story, <main person>" / "Then <name>" / "In the
  end, <name>". A 135M model writes one good sentence; asked for one 120-word paragraph it loops and drifts
  into talk about the text.
- Lengths: `short|medium|long` map to word targets (2, 5 and 10 parts); `--words N` overrides. The book
  summary stored by the reading pass is the `medium` one; other lengths are made on demand from the stored
  chapter summaries and notes.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from .. import prompts
from ..backend.base import Backend
from ..read.tags import lead_name
from .content import gate
from .grounding import Part, join_parts
from .reduce import CHAPTER_PREFILL, STOP, _system, _tokens_for_words, chapter_summary, reduce

LENGTHS = {"short": 60, "medium": 120, "long": 250}
PART_WORDS = 25  # one part of a book summary: a sentence, what a 135M model writes without looping
BOOK_PREFILL = "In this story,"


def book_groups(texts: list[str], words: int) -> list[list[str]]:
    """The book's in-order inputs split into consecutive runs of about equal length, one per part of the
    summary: `round(words / PART_WORDS)` parts (at least 1, at most one per input)."""
    k = max(1, min(len(texts), round(words / PART_WORDS)))
    sizes = [len(t.split()) + 1 for t in texts]
    total, groups, run = sum(sizes), [[] for _ in range(k)], 0
    for t, n in zip(texts, sizes):
        groups[min(k - 1, int((run + n / 2) * k / total))].append(t)  # by where the text's middle falls
        run += n
    out = [g for g in groups if g]
    assert sum(map(len, out)) == len(texts)
    return out


def _place(i: int, k: int) -> str:
    return "the story" if k == 1 else "the beginning" if i == 0 else "the end" if i == k - 1 else "the middle"


def _part_render(title: str, words: int, place: str) -> Callable[[list[str]], str]:
    def render(items: list[str]) -> str:
        return prompts.get("merge_summary").render(title=title, words=words, place=place,
                                                   summaries="\n".join(f"- {s}" for s in items))
    return render


def part_prefill(i: int, k: int, group: list[str], people: list[str]) -> str:
    """How part i of k starts: "In this story, <main person>", "Then <name>", "In the end, <name>" — a small
    model then tells what that person does, and the parts read in order."""
    if i == 0:
        return f"{BOOK_PREFILL} {people[0] if people else ''}".strip()
    name = lead_name(" ".join(group))  # a proper noun used mid-sentence, not a heading ("Contempt of That")
    return f"{'In the end,' if i == k - 1 else 'Then'} {name}".strip()


def book_parts(index: Any, title: str, words: int, source: str) -> list[Part]:
    """The parts of a `words`-long book summary, in order."""
    groups = book_groups(book_inputs(index), words)
    people, each = main_people(index, source), words // len(groups)
    return [Part(_part_render(title, each, _place(i, len(groups))), g, part_prefill(i, len(groups), g, people),
                 _tokens_for_words(each)) for i, g in enumerate(groups)]


def book_summary(engine: Backend, index: Any, title: str, words: int, window: int, source: str) -> str:
    """A `words`-long summary as parts in order (`book_parts`), each merged hierarchically (`reduce`): a
    135M model writes one good sentence but loops over two hundred words."""
    return join_parts([reduce(engine, p.inputs, p.render, p.cap, window, source, prefill=p.start)
                       for p in book_parts(index, title, words, source)])


def book_forks(engine: Backend, index: Any, title: str, window: int, source: str) -> list[tuple[Any, Part]] | None:
    """The medium book summary's parts as forks (decoded later, batched); None when a part needs a
    hierarchical merge (then `book_summary`). Finish each decoded part with `ground_part`, then `join_parts`."""
    out = []
    for p in book_parts(index, title, LENGTHS["medium"], source):
        prompt = p.render(p.inputs)
        if engine.count(prompt) > window - p.cap:
            return None
        out.append((engine.prompt_fork(_system(), prompt, p.cap, stop=STOP, prefill=p.start), p))
    return out


def main_people(index: Any, source: str, n: int = 8) -> list[str]:
    """The names tagged in the most passages, spelled as the text most often spells them (tags are lowercase)."""
    out = []
    for name in index.top_names(n):
        forms = Counter(m for m in re.findall(rf"\b{re.escape(name)}\b", source, re.I) if m[:1].isupper())
        out.append(forms.most_common(1)[0][0] if forms else name.title())
    return out


def book_inputs(index: Any) -> list[str]:
    """What the book summary is merged from: the chapter summaries, or the notes when there are fewer than
    three chapters (a one-chapter story's summary would otherwise be its one- or two-sentence chapter summary)."""
    chs = index.summaries("chapter")
    if len(chs) < 3:
        return [n.gist for n in index.notes()]
    out = [re.sub(rf"^{CHAPTER_PREFILL}\s*", "", s.text) for s in chs]  # the book's parts, not "chapters"
    return [t[:1].upper() + t[1:] for t in out]


def chapter_lines(index: Any, text: str, book: str) -> list[tuple[Any, Any]]:
    """(chapter, summary) pairs in order, each line passed again through today's strict gate against its
    chapter's text: a model line an older gate let through may fail it, and then the chapter's key sentence
    stands in (method "extractive"); an extractive line is today's key sentence. The index keeps what the
    model wrote."""
    chapters = {c.index: c for c in index.chapters()}
    out = []
    for s in index.summaries("chapter"):
        ch = chapters.get(s.chapter)
        if ch is None:
            continue
        if ch.char_end > ch.char_start:
            line = s.text if s.method == "model" else ""
            line, method = gate(line, text[ch.char_start:ch.char_end], book, strict=True)
            if line:  # a chapter without a sentence to stand in keeps its stored line
                s = replace(s, text=line, method=method)
        out.append((ch, s))
    return out


def build_hierarchy(index: Any, engine: Backend, doc: Any, titles: dict[int, str], settings: Any
                    ) -> Iterator[tuple[str, str, str]]:
    """Make the missing chapter summaries, then the book summary. Yields (kind, chapter title, text)."""
    window = settings.window + settings.max_pinned
    have = {s.chapter for s in index.summaries("chapter")}
    notes = index.notes()
    spans = {c.index: (c.char_start, c.char_end) for c in index.chapters()}
    book = doc.text[doc.body_start:doc.body_end] or doc.text
    by_chapter: dict[int, list[str]] = {}
    for n in notes:
        by_chapter.setdefault(n.chapter, []).append(n.gist)
    made = False
    for ch, title in sorted(titles.items()):
        if ch in have or ch not in by_chapter:
            continue
        chunk_ids = [n.chunk for n in notes if n.chapter == ch]
        text = chapter_summary(engine, doc.title, title, by_chapter[ch], window, doc.text)
        a, b = spans.get(ch, (0, 0))
        # a vacuous or invented line: the chapter's key sentence instead
        text, method = gate(text, doc.text[a:b], book, strict=True)
        index.add_summary("chapter", text, min(chunk_ids), max(chunk_ids), chapter=ch, method=method)
        made = True
        yield ("chapter", title, text)
    if made or not index.summaries("book"):
        text = book_summary(engine, index, doc.title, LENGTHS["medium"], window, doc.text)
        index.add_summary("book", text, 0, max(n.chunk for n in notes))
        yield ("book", "", text)
