"""Summaries: rolling (while reading), per chapter, and for the whole book — hierarchical, never truncated.

Design choices:
- Chapter summaries are made from the chapter's notes. The book summary is *parts in order*: its inputs
  (the chapter summaries, or the notes of a book with fewer than 3 chapters) are split into consecutive runs
  of about equal length, one per `PART_WORDS` words asked for, and each run is told in a sentence started
  "In this story, <main person>" / "Then <name>" / "In the end, <name>". A 135M model writes one good
  sentence; asked for one 120-word paragraph it loops and drifts into talk about the text.
- `reduce()` is the one hierarchical merge: it packs consecutive texts into groups whose *whole prompt* fits
  the window (prompt + output ≤ window), summarises each group into a part short enough that two parts
  merge within the window, and repeats until everything fits one last prompt. No input is ever cut; a
  single text too long for a prompt is an assertion failure (notes and summaries are bounded by their
  generation caps, so it cannot happen).
- Grounding: a small model invents. Every generated summary passes `grounded()`: sentences naming someone
  or something (a capitalised word mid-sentence) that does not occur in the document are dropped, and so are
  repeated sentences. If nothing survives, the summary falls back to the source sentences themselves.
- Lengths: `short|medium|long` map to word targets (2, 5 and 10 parts); `--words N` overrides. The book
  summary stored by the reading pass is the `medium` one; other lengths are made on demand from the stored
  chapter summaries and notes.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import prompts
from .note.tags import join_lead, lead_name, names

LENGTHS = {"short": 60, "medium": 120, "long": 250}
PART_WORDS = 25  # one part of a book summary: a sentence, what a 135M model writes without looping
CHAPTER_PREFILL = "In this chapter,"
BOOK_PREFILL = "In this story,"
STOP = ("<|im_end|>", "<|endoftext|>", "\n\n")
_SENT = re.compile(r"(?<=[.!?])(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)\s+")  # not "Mr. Darcy"
_CAP = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_NUMBERED = re.compile(r"(?:^|(?<=[:.!?]\s))\d{1,2}[.)]\s+(?=\S)")  # "1. " opening a list item
_BULLET = re.compile(r"(?:^|\s)[-•*]\s+(?=\S)")  # "- " items, once the text has a bulleted list
_META = re.compile(r"\b(?:(?:the|this) passage|factual note|(?:the|this) summary|the (?:original )?text|"
                   r"the document|stop reading|(?:in )?about \d+ words)\b", re.I)


def _system() -> str:
    return prompts.get("system").render()


def _sentence_key(sent: str) -> str:
    """What two sentences share when one repeats the other (case, punctuation and spacing aside)."""
    return re.sub(r"\W+", " ", sent.lower()).strip()


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
        key = _sentence_key(sent)
        if not key or key in seen or sent.endswith(":") or _META.search(sent):
            continue
        if any(w not in source for w in _CAP.findall(sent)):
            continue
        if not re.search(r"[.!?]$", sent) and keep:  # an unfinished last sentence (hit the token cap)
            continue
        seen.add(key)
        keep.append(sent)
    out = " ".join(keep).strip()
    if not out and fallback:  # the source sentences, grounded too when that leaves anything
        out = grounded(" ".join(fallback[:3]), source) or " ".join(fallback[:3])
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
        return ground_part(engine, Part(render, group, prefill, cap), out, source)

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


@dataclass
class Part:
    """One part of a book summary: its prompt renderer, inputs, the words it starts with, its token cap."""
    render: Callable[[list[str]], str]
    inputs: list[str]
    start: str
    cap: int


def book_parts(index: Any, title: str, words: int, source: str) -> list[Part]:
    """The parts of a `words`-long book summary, in order."""
    groups = book_groups(book_inputs(index), words)
    people, each = main_people(index, source), words // len(groups)
    return [Part(_part_render(title, each, _place(i, len(groups))), g, part_prefill(i, len(groups), g, people),
                 _tokens_for_words(each)) for i, g in enumerate(groups)]


def ground_part(engine: Any, part: Part, text: str, source: str) -> str:
    """A decoded part (or any merge) grounded; if nothing survives, its leading inputs stand in."""
    return grounded(join_lead(part.start, text), source, fallback=_first(engine, part.inputs, part.cap))


def join_parts(parts: list[str]) -> str:
    """The book summary: its grounded parts in order, each ending a sentence, a sentence repeated across
    parts kept once."""
    seen: set[str] = set()
    out: list[str] = []
    for part in parts:
        part = part.strip()
        if part and not re.search(r"[.!?][\"'’”)]*$", part):
            part += "."  # a fallback that stops mid-sentence must not run into the next part
        for sent in _SENT.split(part):
            key = _sentence_key(sent)
            if key and key not in seen:
                seen.add(key)
                out.append(sent)
    return " ".join(out)


def book_summary(engine: Any, index: Any, title: str, words: int, window: int, source: str) -> str:
    """A `words`-long summary as parts in order (`book_parts`), each merged hierarchically (`reduce`): a
    135M model writes one good sentence but loops over two hundred words."""
    return join_parts([reduce(engine, p.inputs, p.render, p.cap, window, source, prefill=p.start)
                       for p in book_parts(index, title, words, source)])


def book_forks(engine: Any, index: Any, title: str, window: int, source: str) -> list[tuple[Any, Part]] | None:
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
