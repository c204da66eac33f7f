"""The rows an `Index` returns: plain dataclasses, one per table (a note joined with its chunk and tags).

Every row that points into the file is a `Span` (chapter, chapter title, char and line range): chunks, notes,
search hits and retrieved passages. Span fields are keyword-only, so each row's own fields stay positional.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DocumentInfo:
    sha256: str
    path: str | None
    title: str | None
    size_chars: int | None
    model: str | None
    settings: dict[str, Any]
    settings_hash: str | None
    status: str
    chunks_total: int | None
    created: str
    updated: str


@dataclass
class IndexedChapter:
    index: int
    title: str | None
    char_start: int
    char_end: int
    line_start: int | None = None
    line_end: int | None = None


@dataclass(kw_only=True)
class Span:
    """Where a row sits in the file: `text[char_start:char_end]`, lines 1-based inclusive."""

    chapter: int | None
    chapter_title: str | None
    char_start: int
    char_end: int
    line_start: int | None = None
    line_end: int | None = None


@dataclass
class IndexedChunk(Span):
    ordinal: int
    tokens: int | None
    text: str


@dataclass
class Note(Span):
    chunk: int
    gist: str
    tags: list[str] = field(default_factory=list)
    created: str | None = None
    method: str = "model"  # "model" | "extractive" (the content gate replaced a vacuous note)


@dataclass
class Summary:
    id: int
    level: str
    chapter: int | None
    chunk_start: int
    chunk_end: int
    text: str
    created: str
    method: str = "model"  # "model" | "extractive" (the content gate replaced a vacuous line)


@dataclass
class Hit(Span):
    """One search result: a chunk with its citation span, note and a highlighted snippet."""

    chunk: int
    score: float
    gist: str | None
    tags: list[str] = field(default_factory=list)
    snippet: str | None = None
