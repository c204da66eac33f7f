"""Grounding: a small model invents, so every generated summary sentence is checked against the source.

Design choices:
- `grounded()` keeps the sentences whose capitalised words (a name, a place) and numbers (`text.numbers`, in
  words or digits: "400,010,020,030" was written in a summary of a story that has none of them) all occur in
  the source and whose content words mostly do (`content.grounding` >= 0.5: "She is a skilled and cunning
  sorceress" is invented when the story never says so); it drops repeats, list lead-ins and markers (a summary
  is prose), loops, and sentences about the text instead of the story (`content.META`, the one maintained list
  of such phrases: the gate of chapter lines uses it too).
- When nothing survives, the source sentences themselves stand in (`fallback`), grounded too when that leaves
  anything: an extractive line beats an invented one.
- The one sentence splitter (`text.sentences`, which does not split after Mr./Mrs./Dr.) and one repeat key
  (`_sentence_key`) serve both `grounded()` and `join_parts()`.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ..backend.base import Backend
from ..read.tags import join_lead
from ..text.numbers import numbers
from ..text.sentences import ends_sentence, split_sentences
from .content import MIN_GROUNDING, grounding, loops, meta_phrase

_CAP = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_NUMBERED = re.compile(r"(?:^|(?<=[:.!?]\s))\d{1,2}[.)]\s+(?=\S)")  # "1. " opening a list item
_BULLET = re.compile(r"(?:^|\s)[-•*]\s+(?=\S)")  # "- " items, once the text has a bulleted list


@lru_cache(maxsize=16)
def _told(source: str) -> frozenset[str]:
    """The numbers `source` states, read once: every summary sentence of a read is checked against the same book
    (37 ms for Pride and Prejudice)."""
    return frozenset(numbers(source))


def _sentence_key(sent: str) -> str:
    """What two sentences share when one repeats the other (case, punctuation and spacing aside)."""
    return re.sub(r"\W+", " ", sent.lower()).strip()


def grounded(text: str, source: str, fallback: list[str] | None = None) -> str:
    """Keep the sentences of `text` whose capitalised words all occur in `source`; drop repeats, list lead-ins
    ("The key events are:"), list markers (a summary is prose) and sentences about the text instead of the
    story ("The passage is a continuation of the original text.")."""
    keep: list[str] = []
    seen: set[str] = set()
    flat = _NUMBERED.sub("\n", " ".join(text.split()))
    if re.search(r"(?:^|:)\s*[-•*]\s", flat):
        flat = _BULLET.sub("\n", flat)
    for sent in (s.strip() for line in flat.split("\n") for s in split_sentences(line)):
        key = _sentence_key(sent)
        if not key or key in seen or sent.endswith(":") or meta_phrase(sent) or loops(sent):
            continue
        if any(w not in source for w in _CAP.findall(sent)) or not numbers(sent) <= _told(source):
            continue  # a name, or a number ("40,000 miles", in words or digits), that the source never states
        g = grounding(sent, source)
        if g is not None and g < MIN_GROUNDING:  # most of its words are not the source's: invented
            continue
        if not re.search(r"[.!?]$", sent) and keep:  # an unfinished last sentence (hit the token cap)
            continue
        seen.add(key)
        keep.append(sent)
    out = " ".join(keep).strip()
    if not out and fallback:  # the source sentences, grounded too when that leaves anything
        out = grounded(" ".join(fallback[:3]), source) or " ".join(fallback[:3])
    return out


def _first(engine: Backend, texts: list[str], tokens: int) -> list[str]:
    """The leading texts that fit `tokens` together (at least one): a merge's fallback is no longer than a
    merge's output, so every level shrinks."""
    out: list[str] = []
    for t in texts:
        if out and engine.count(" ".join([*out, t])) > tokens:
            break
        out.append(t)
    return out


@dataclass
class Part:
    """One part of a book summary: its prompt renderer, inputs, the words it starts with, its token cap."""
    render: Callable[[list[str]], str]
    inputs: list[str]
    start: str
    cap: int


def ground_part(engine: Backend, part: Part, text: str, source: str) -> str:
    """A decoded part (or any merge) grounded; if nothing survives, its leading inputs stand in."""
    return grounded(join_lead(part.start, text), source, fallback=_first(engine, part.inputs, part.cap))


def join_parts(parts: list[str]) -> str:
    """The book summary: its grounded parts in order, each ending a sentence, a sentence repeated across
    parts kept once."""
    seen: set[str] = set()
    out: list[str] = []
    for part in parts:
        part = part.strip()
        if part and not ends_sentence(part):
            part += "."  # a fallback that stops mid-sentence must not run into the next part
        for sent in split_sentences(part):
            key = _sentence_key(sent)
            if key and key not in seen:
                seen.add(key)
                out.append(sent)
    return " ".join(out)
