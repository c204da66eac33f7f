"""Summaries: rolling (while reading), per chapter, and for the whole book — hierarchical, never truncated.

Design choices:
- Chapter summaries are made from the chapter's notes; the book summary from the chapter summaries.
- `reduce()` is the one hierarchical merge: it packs consecutive texts into groups whose *whole prompt* fits
  the window (prompt + output ≤ window), summarises each group into a part short enough that two parts
  merge within the window, and repeats until everything fits one last prompt. No input is ever cut; a
  single text too long for a prompt is an assertion failure (notes and summaries are bounded by their
  generation caps, so it cannot happen).
- Grounding: a small model invents. Every generated summary passes `grounded()`: sentences naming someone
  or something (a capitalised word mid-sentence) that does not occur in the document are dropped, and so are
  repeated sentences. If nothing survives, the summary falls back to the source sentences themselves.
- Lengths: `short|medium|long` map to word targets; `--words N` overrides. The book summary stored by the
  reading pass is the `medium` one; other lengths are made on demand from the stored chapter summaries.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from . import prompts
from .note.tags import join_lead, names

LENGTHS = {"short": 60, "medium": 120, "long": 250}
CHAPTER_PREFILL = "In this chapter,"
BOOK_PREFILL = "In this story,"
STOP = ("<|im_end|>", "<|endoftext|>", "\n\n")
_SENT = re.compile(r"(?<=[.!?])\s+")
_CAP = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_NUMBERED = re.compile(r"(?:^|(?<=[:.!?]\s))\d{1,2}[.)]\s+(?=\S)")  # "1. " opening a list item
_BULLET = re.compile(r"(?:^|\s)[-•*]\s+(?=\S)")  # "- " items, once the text has a bulleted list
_META = re.compile(r"\b(?:(?:the|this) passage|factual note|(?:the|this) summary|the (?:original )?text|"
                   r"the document|stop reading)\b", re.I)


def _system() -> str:
    return prompts.get("system").render()


def _tokens_for_words(words: int) -> int:
    return int(words * 1.6) + 16


def grounded(text: str, source: str, fallback: list[str] | None = None) -> str:
    """Keep the sentences of `text` whose capitalised words all occur in `source`; drop repeats, list lead-ins
    ("The key events are:"), list markers (a summary is prose) and sentences about the text instead of the
    story ("The passage is a continuation of the original text.")."""
    keep: list[str] = []
    seen: set[str] = set()
    flat = _NUMBERED.sub("\n", " ".join(text.split()))
    if re.search(r"(?:^|:)\s*[-•*]\s", flat):
        flat = _BULLET.sub("\n", flat)
    for sent in (s.strip() for line in flat.split("\n") for s in _SENT.split(line)):
        key = re.sub(r"\W+", " ", sent.lower()).strip()
        if not key or key in seen or sent.endswith(":") or _META.search(sent):
            continue
        if any(w not in source for w in _CAP.findall(sent)):
            continue
        if not re.search(r"[.!?]$", sent) and keep:  # an unfinished last sentence (hit the token cap)
            continue
        seen.add(key)
        keep.append(sent)
    out = " ".join(keep).strip()
    if not out and fallback:
        out = " ".join(fallback[:3])
    return out


def reduce(engine: Any, texts: list[str], render: Callable[[list[str]], str], max_new_tokens: int,
           window: int, source: str, prefill: str = "",
           on_merge: Callable[[int, int], None] | None = None) -> str:
    """Summarise `texts` hierarchically so that every prompt + output fits `window` tokens.

    When everything fits one prompt, that is the only merge (its output may use `max_new_tokens`). Otherwise
    consecutive texts are packed into groups and each group is merged into a *part* of at most `part`
    tokens, small enough that two parts and the output of their merge fit the window together — so from the
    second level on every level at least halves, whatever the window and the output length asked for."""
    assert texts, "nothing to summarise"
    part = min(max_new_tokens, (window - engine.count(render([])) - 16) // 3)
    assert part >= 8, f"a merge window of {window} tokens is too small to merge anything"

    def merge(group: list[str], cap: int) -> str:
        prompt = render(group)
        n = engine.count(prompt)
        assert n + cap <= window, f"a single text of {n} tokens does not fit a merge window of {window}"
        if on_merge:
            on_merge(n, cap)
        out = engine.complete_text(_system(), prompt, cap, stop=STOP, prefill=prefill)
        return grounded(join_lead(prefill, out), source, fallback=_first(engine, group, cap))

    level, depth = list(texts), 0
    while engine.count(render(level)) + max_new_tokens > window:
        groups: list[list[str]] = [[]]
        for t in level:
            if groups[-1] and engine.count(render(groups[-1] + [t])) + part > window:
                groups.append([])
            groups[-1].append(t)
        outs = [merge(g, part) for g in groups]
        assert depth == 0 or len(outs) < len(level), "a merge level must shrink"
        level, depth = outs, depth + 1
    return merge(level, max_new_tokens)


def _first(engine: Any, texts: list[str], tokens: int) -> list[str]:
    """The leading texts that fit `tokens` together (at least one): a merge's fallback is no longer than a
    merge's output, so every level shrinks."""
    out: list[str] = []
    for t in texts:
        if out and engine.count(" ".join([*out, t])) > tokens:
            break
        out.append(t)
    return out


def _chapter_prompt(title: str, chapter: str, notes: list[str]) -> str:
    return prompts.get("chapter_summary").render(title=title, chapter=chapter, notes="\n".join(f"- {n}" for n in notes))


def chapter_prefill(notes: list[str]) -> str:
    """"In this chapter," and the name its notes use most: a small model then tells what that person does."""
    return f"{CHAPTER_PREFILL} {next(iter(names(' '.join(notes), top=1)), '')}".strip()


def chapter_summary(engine: Any, title: str, chapter: str, notes: list[str], window: int, source: str) -> str:
    return reduce(engine, notes, lambda items: _chapter_prompt(title, chapter, items), 80, window, source,
                  prefill=chapter_prefill(notes))


def chapter_fork(engine: Any, title: str, chapter: str, notes: list[str], max_new_tokens: int, window: int
                 ) -> tuple[Any, str] | None:
    """The chapter summary as a fork (decoded later, batched with notes) and the words it starts with; None if
    the notes need a hierarchical merge (`chapter_summary`) because they do not fit one prompt."""
    prompt = _chapter_prompt(title, chapter, notes)
    if engine.count(prompt) > window - max_new_tokens - 64:
        return None
    start = chapter_prefill(notes)
    return engine.prompt_fork(_system(), prompt, max_new_tokens, stop=STOP, prefill=start), start


def _book_render(title: str, words: int, people: list[str]) -> Callable[[list[str]], str]:
    named = f"The people named most often in it: {', '.join(people)}.\n" if people else ""

    def render(items: list[str]) -> str:
        return prompts.get("merge_summary").render(title=title, words=words, people=named,
                                                   summaries="\n".join(f"- {s}" for s in items))
    return render


def book_summary(engine: Any, index: Any, title: str, words: int, window: int, source: str) -> str:
    """Merge the index's `book_inputs` hierarchically; its `main_people` are named in every merge prompt, and
    every merge starts with `book_prefill`."""
    people = main_people(index, source)
    return reduce(engine, book_inputs(index), _book_render(title, words, people),
                  _tokens_for_words(words), window, source, prefill=book_prefill(people))


def book_fork(engine: Any, index: Any, title: str, window: int, source: str) -> tuple[Any, str] | None:
    """The medium book summary as one fork (decoded later, batched) and the words it starts with, or None
    when its inputs need more than one merge (then `book_summary`). Ground the decoded text with
    `grounded(join_lead(start, text), source, book_inputs(index))` as `reduce` does."""
    max_new = _tokens_for_words(LENGTHS["medium"])
    people = main_people(index, source)
    prompt = _book_render(title, LENGTHS["medium"], people)(book_inputs(index))
    if engine.count(prompt) > window - max_new:
        return None
    start = book_prefill(people)
    return engine.prompt_fork(_system(), prompt, max_new, stop=STOP, prefill=start), start


def book_prefill(people: list[str]) -> str:
    """"In this story," and the main person: the summary then tells what they do (a bare name only made the
    135M model go on listing names)."""
    return f"{BOOK_PREFILL} {people[0] if people else ''}".strip()


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


def build_hierarchy(index: Any, engine: Any, doc: Any, titles: dict[int, str], settings: Any
                    ) -> Iterator[tuple[str, str, str]]:
    """Make the missing chapter summaries, then the book summary. Yields (kind, chapter title, text)."""
    window = settings.window + settings.max_pinned
    have = {s.chapter for s in index.summaries("chapter")}
    notes = index.notes()
    by_chapter: dict[int, list[str]] = {}
    for n in notes:
        by_chapter.setdefault(n.chapter, []).append(n.gist)
    made = False
    for ch, title in sorted(titles.items()):
        if ch in have or ch not in by_chapter:
            continue
        chunk_ids = [n.chunk for n in notes if n.chapter == ch]
        text = chapter_summary(engine, doc.title, title, by_chapter[ch], window, doc.text)
        index.add_summary("chapter", text, min(chunk_ids), max(chunk_ids), chapter=ch)
        made = True
        yield ("chapter", title, text)
    if made or not index.summaries("book"):
        text = book_summary(engine, index, doc.title, LENGTHS["medium"], window, doc.text)
        index.add_summary("book", text, 0, max(n.chunk for n in notes))
        yield ("book", "", text)
