"""Find a Document's chapters: the original's navigation, headings in plain text (Gutenberg style) and
Markdown, or fixed sections.

Design choices:
- Chapters partition the body: chapter i runs from its heading line to the next chapter's heading, the last to
  `body_end`. Chunks never cross a chapter boundary, so every chunk belongs to exactly one chapter.
- Navigation first: an EPUB's nav/NCX, an HTML file's h1–h3 headings or a PDF's outline (`doc.toc`, made by
  the loaders) are treated like Markdown headings — explicit, so no minimum section size; levels as below;
  entries outside the body (a Gutenberg licence) are dropped. Without them, the text's headings are looked for.
- Headings, Markdown: ATX `#`…`######` outside code fences. The chapter level is the shallowest level used at
  least twice; shallower headings are "parts", deeper ones stay inside their chapter.
- Headings, plain text (Gutenberg style): a short line with a blank line (or the body edge) above and below,
  matching `CHAPTER I.`, `Chapter 1`, `CHAPTER XII. The Title`, `ADVENTURE I. …`, `Letter 1`, a roman or arabic
  numeral alone (`I.`, `IV`) or with a title (`I. A SCANDAL IN BOHEMIA`), `PART I`/`BOOK II`/`VOLUME 3`, or
  `PROLOGUE`/`EPILOGUE`/`PREFACE`/…. If any CHAPTER/ADVENTURE/LETTER-style heading exists, bare numerals are
  sub-sections (the `I.`, `II.` inside each Sherlock Holmes adventure); otherwise numerals are the chapters.
  A bare numeral followed by a short title line (The Time Machine's `I` / `Introduction`) takes it as subtitle;
  a roman numeral with a title (`VII. THE ADVENTURE OF …`) is always a chapter.
- Table of contents: a heading whose section holds < MIN_SECTION_CHARS non-space characters before the next
  heading of its level is dropped (TOC entries, repeated titles: the occurrence followed by real text wins).
- Parts (`PART I`, a lone top `#`): a part with text of its own becomes a chapter; otherwise it is merged into the
  first chapter after it, and when a book has two or more parts their title prefixes the chapter's
  (`PART I. — CHAPTER I. MR. SHERLOCK HOLMES.`).
- Front matter (text before the first heading) is a chapter only if it holds ≥ FRONT_MATTER_MIN_CHARS non-space
  characters; a title page or a contents list is merged into the first chapter instead.
- No headings: fixed sections of ~SECTION_CHARS characters titled `Section 1`, `Section 2`…, cut at the last
  paragraph break (else line break, else space) in the second half of each window.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from .load import Document

MIN_SECTION_CHARS = 200
FRONT_MATTER_MIN_CHARS = 1000
SECTION_CHARS = 30_000
MAX_HEADING_CHARS = 100
FRONT_MATTER = "Front matter"
_ROMAN = r"(?=[MDCLXVI])M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_WORDS = (r"(?i:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
          r"sixteen|seventeen|eighteen|nineteen|twenty|the\s+\w+)")
_NUM = rf"(?:{_ROMAN}|\d{{1,4}}|{_WORDS})"
_TAIL = r"(?:[\s.:—–-]+(?P<title>\S.*))?"
_PART_RE = re.compile(rf"(?P<kw>(?i:part|book|volume))\s+(?P<num>{_NUM})\b\.?{_TAIL}")
_CHAPTER_RE = re.compile(rf"(?P<kw>(?i:chapter|adventure|letter|stave|canto|story))\s+(?P<num>{_NUM})\b\.?{_TAIL}")
_NUMBER_RE = re.compile(rf"(?P<num>{_ROMAN}|\d{{1,3}})(?:\.|(?=\s)|$)(?:\s+(?P<title>[^\sa-z].*))?")
_SPECIAL_RE = re.compile(r"(?P<kw>(?i:prologue|epilogue|preface|introduction|foreword|afterword|conclusion|"
                         r"postscript|appendix))\b\.?" + _TAIL)
_MD_RE = re.compile(r"[ ]{0,3}(?P<hashes>#{1,6})[ \t]+(?P<title>\S.*?)[ \t#]*")
_FENCE_RE = re.compile(r"[ ]{0,3}(```|~~~)")
_PARA_BREAK = re.compile(r"\r?\n(?:[ \t]*\r?\n)+")
_NON_SPACE = re.compile(r"\S")
_ITALICS = re.compile(r"_(\S[^_]*?)_")  # Gutenberg marks italics as _text_


@dataclass
class Chapter:
    index: int
    title: str
    char_start: int
    char_end: int


@dataclass
class _Heading:
    start: int  # offset of the heading line
    end: int  # offset just past the heading (and subtitle) line
    rank: str  # "part" | "chapter" | "titled" (roman numeral + title) | "number" | "special" | "md"
    title: str
    level: int = 0  # markdown level


def _lines(doc: Document, start: int, end: int) -> Iterator[tuple[int, int, str]]:
    """(line_start, line_end_without_newline, stripped_text) for every line overlapping [start, end)."""
    text, starts = doc.text, doc.line_starts
    i = doc.line_of(start) - 1
    while i < len(starts) and starts[i] < end:
        a = max(starts[i], start)
        b = min(starts[i + 1] if i + 1 < len(starts) else len(text), end)
        if b - a > MAX_HEADING_CHARS * 4:  # a long line is never a heading; don't copy it
            yield a, b, "\x00long"
        else:
            yield a, b, text[a:b].strip()
        i += 1


def _count_non_space(text: str, start: int, end: int, cap: int) -> int:
    """Non-whitespace characters in text[start:end], counting at most `cap` (cheap on huge sections)."""
    n = 0
    for _ in _NON_SPACE.finditer(text, start, end):
        n += 1
        if n >= cap:
            break
    return n


def _classify(line: str) -> tuple[str, str] | None:
    """(rank, title) if a stripped line looks like a plain-text heading."""
    if not line or len(line) > MAX_HEADING_CHARS or line.endswith((",", ";")):
        return None
    for rank, rx in (("part", _PART_RE), ("chapter", _CHAPTER_RE), ("special", _SPECIAL_RE),
                     ("number", _NUMBER_RE)):
        m = rx.fullmatch(line)
        if m:
            return rank, line
    return None


def _is_subtitle(line: str) -> bool:
    """A short title-like line: capitalised, no sentence punctuation at the end, not itself a numbered heading."""
    bare = line.strip("_* ")
    c = _classify(line)
    return (0 < len(bare) <= 60 and bare[0].isupper() and not bare.endswith(tuple(".,;:!?—–-\"'”’"))
            and (c is None or c[0] == "special"))


def _plain_headings(doc: Document) -> list[_Heading]:
    lines = list(_lines(doc, doc.body_start, doc.body_end))
    out: list[_Heading] = []
    skip = -1
    for i, (a, b, s) in enumerate(lines):
        if i <= skip or not s:
            continue
        if (i > 0 and lines[i - 1][2]) or (i + 1 < len(lines) and lines[i + 1][2]):
            continue  # not surrounded by blank lines
        c = _classify(s)
        if c is None:
            continue
        rank, title = c
        end = b
        m = _NUMBER_RE.fullmatch(s)
        if rank == "number" and m and not m.group("title"):
            # a bare `I` may carry its title on the next short line (The Time Machine: `I` / `Introduction`)
            j = i + 1
            while j < len(lines) and j <= i + 4 and not lines[j][2]:
                j += 1
            if (j < len(lines) and j <= i + 4 and _is_subtitle(lines[j][2])
                    and (j + 1 >= len(lines) or not lines[j + 1][2])):
                sub = lines[j][2].strip("_* ")
                title = f"{title} {sub}" if title.endswith(".") else f"{title}. {sub}"
                end, skip = lines[j][1], j
        if rank == "number" and m and m.group("title") and not m.group("num").isdigit():
            rank = "titled"  # `VII. THE ADVENTURE OF …`: a chapter even among CHAPTER/ADVENTURE headings
        out.append(_Heading(start=a, end=end, rank=rank, title=_ITALICS.sub(r"\1", title)))
    return out


def _markdown_headings(doc: Document) -> list[_Heading]:
    out: list[_Heading] = []
    fence: str | None = None
    for a, b, s in _lines(doc, doc.body_start, doc.body_end):
        raw = doc.text[a:b].rstrip("\r\n") if s != "\x00long" else ""
        f = _FENCE_RE.match(raw)
        if f:
            fence = None if fence == f.group(1) else (fence or f.group(1))
            continue
        if fence:
            continue
        m = _MD_RE.fullmatch(raw)
        if m:
            out.append(_Heading(start=a, end=b, rank="md", title=m.group("title"), level=len(m.group("hashes"))))
    return out


def _toc_headings(doc: Document) -> list[_Heading]:
    """The loader's navigation entries inside the body as Markdown-like headings; of several at one offset (a
    part and its first chapter) the last, deepest, is kept."""
    out: list[_Heading] = []
    for t in doc.toc or []:
        if not doc.body_start <= t.char_start < doc.body_end:
            continue
        h = _Heading(start=t.char_start, end=max(t.char_end, t.char_start), rank="md", title=t.title, level=t.level)
        if out and out[-1].start == h.start:
            out[-1] = h
        else:
            out.append(h)
    return out


def _levels(heads: list[_Heading]) -> list[_Heading]:
    """Keep part- and chapter-level headings (rank becomes "part" or "chapter"), drop sub-sections."""
    if not heads:
        return []
    if heads[0].rank == "md":
        counts: dict[int, int] = {}
        for h in heads:
            counts[h.level] = counts.get(h.level, 0) + 1
        repeated = [lv for lv, n in counts.items() if n >= 2]
        level = min(repeated) if repeated else min(counts)
        return [_Heading(h.start, h.end, "part" if h.level < level else "chapter", h.title)
                for h in heads if h.level <= level]
    has_chapter = any(h.rank == "chapter" for h in heads)
    out = []
    for h in heads:
        if h.rank == "number" and has_chapter:
            continue  # bare or arabic numerals are sub-sections inside CHAPTER/ADVENTURE headings
        rank = "part" if h.rank == "part" else "chapter"
        out.append(_Heading(h.start, h.end, rank, h.title))
    return out


def fixed_sections(doc: Document, start: int, end: int, size: int = SECTION_CHARS) -> list[tuple[int, int]]:
    """Cut [start, end) into ~size-character spans at paragraph, else line, else space boundaries."""
    out = []
    pos = start
    while end - pos > size:
        cut = _cut_point(doc.text, pos, pos + size)
        out.append((pos, cut))
        pos = cut
    out.append((pos, end))
    return out


def _cut_point(text: str, lo: int, hi: int) -> int:
    """The best place to end a span that starts at `lo`, at most `hi`: last break in the window's second half."""
    mid = lo + (hi - lo) // 2
    last = None
    for last in _PARA_BREAK.finditer(text, mid, hi):
        pass
    if last is not None:
        return last.end()
    for sep in ("\n", " ", "\t"):
        i = text.rfind(sep, mid, hi)
        if i != -1:
            return i + 1
    return hi


def find_chapters(doc: Document) -> list[Chapter]:
    """Chapters that partition doc.body_start..doc.body_end, in order (see the module docstring)."""
    text = doc.text
    heads = _toc_headings(doc) or _markdown_headings(doc)
    min_chars = 1 if heads else MIN_SECTION_CHARS
    heads = _levels(heads or _plain_headings(doc))
    # Drop TOC entries: headings with (almost) no text before the next kept-level heading.
    kept: list[_Heading] = []
    for i, h in enumerate(heads):
        nxt = heads[i + 1].start if i + 1 < len(heads) else doc.body_end
        own = _count_non_space(text, h.end, nxt, min_chars)
        if h.rank == "part" or own >= min_chars:
            kept.append(h)
    # Parts: a chapter of their own if they hold text, else context for the chapters that follow.
    n_parts = sum(1 for h in kept if h.rank == "part")
    spans: list[tuple[int, str]] = []  # (start, title)
    pending: _Heading | None = None
    context = ""
    for i, h in enumerate(kept):
        if h.rank == "part":
            nxt = kept[i + 1].start if i + 1 < len(kept) else doc.body_end
            context = h.title if n_parts >= 2 else ""
            if _count_non_space(text, h.end, nxt, min_chars) >= min_chars:
                spans.append((h.start, h.title))
                pending = None
            else:
                pending = h  # merged into the next chapter (an earlier pending part stays in the text before)
            continue
        start = pending.start if pending else h.start
        pending = None
        spans.append((start, f"{context} — {h.title}" if context else h.title))
    if not spans:
        sections = fixed_sections(doc, doc.body_start, doc.body_end)
        return [Chapter(i, f"Section {i + 1}", a, b) for i, (a, b) in enumerate(sections)]
    first = spans[0][0]
    if _count_non_space(text, doc.body_start, first, FRONT_MATTER_MIN_CHARS) >= FRONT_MATTER_MIN_CHARS:
        spans.insert(0, (doc.body_start, FRONT_MATTER))
    else:
        spans[0] = (doc.body_start, spans[0][1])
    chapters = []
    for i, (start, title) in enumerate(spans):
        end = spans[i + 1][0] if i + 1 < len(spans) else doc.body_end
        chapters.append(Chapter(index=i, title=title, char_start=start, char_end=end))
    _check_partition(doc, chapters)
    return chapters


def _check_partition(doc: Document, chapters: list[Chapter]) -> None:
    assert chapters and chapters[0].char_start == doc.body_start and chapters[-1].char_end == doc.body_end
    for a, b in zip(chapters, chapters[1:]):
        assert a.char_end == b.char_start, (a, b)
    for c in chapters:
        assert c.char_start < c.char_end or doc.body_start == doc.body_end, c
