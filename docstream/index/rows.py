"""The rows an `Index` returns: plain dataclasses, one per table (a note joined with its chunk and tags)."""
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


@dataclass
class IndexedChunk:
    ordinal: int
    chapter: int | None
    chapter_title: str | None
    char_start: int
    char_end: int
    line_start: int | None
    line_end: int | None
    tokens: int | None
    text: str


@dataclass
class Note:
    chunk: int
    chapter: int | None
    chapter_title: str | None
    char_start: int
    char_end: int
    line_start: int | None
    line_end: int | None
    gist: str
    tags: list[str] = field(default_factory=list)
    created: str | None = None


@dataclass
class Summary:
    id: int
    level: str
    chapter: int | None
    chunk_start: int
    chunk_end: int
    text: str
    created: str
