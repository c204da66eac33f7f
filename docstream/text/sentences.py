"""The one sentence splitter, for every part that cuts text into sentences: decoding (stop after a sentence),
remote answers, evidence windows (`sentence_windows`: the sentence-level search and the reader's candidates),
the oracle's neighbours, summary grounding."""
from __future__ import annotations

import re

# The end of a sentence, once the next word has begun (so "Mr. Holmes" and "3.5" are not ends).
SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\b[A-Z])[.!?][\"'’”)\]]*(?=\s+\S)")


def first_sentence(text: str) -> str:
    """`text` up to the end of its first complete sentence (punctuation kept), or all of it."""
    m = SENTENCE_END.search(text)
    return text[:m.end()] if m else text


_PARAGRAPH = re.compile(r"\n[ \t]*\r?\n")


def sentence_ends(text: str) -> list[int]:
    """Offsets just past every sentence end and paragraph break of `text`, in order."""
    return sorted({m.end() for m in SENTENCE_END.finditer(text)} | {m.end() for m in _PARAGRAPH.finditer(text)})


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, empty ones dropped."""
    bounds = [0, *sentence_ends(text), len(text)]
    return [t for a, b in zip(bounds, bounds[1:]) if (t := text[a:b].strip())]


_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_CLOSED = re.compile(r"[.!?][\"'’”)]*$")


def ends_sentence(text: str) -> bool:
    """The text ends with a sentence's punctuation (closing quotes or brackets after it allowed)."""
    return _CLOSED.search(text) is not None


def mostly_headings(text: str) -> bool:
    """Fewer than 30 % of its words (of eight or more) begin in lower case: a table of contents, a title page, a
    credits line ("CONTENTS I Introduction II The Machine …"), not prose a question could be about. On the six
    novels of the QA dev set this holds for 7 of their 6,054 sentence windows, all of them such lists."""
    words = _WORD.findall(text)
    return len(words) >= 8 and sum(w[0].islower() for w in words) < 0.3 * len(words)


def sentence_windows(text: str, base: int, span_chars: int) -> list[tuple[int, int]]:
    """Split text into consecutive sentence-aligned windows of about span_chars; absolute (start, end)."""
    bounds = [0, *sentence_ends(text), len(text)]
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
