"""Cut a Document's chapters into token-bounded chunks with exact character offsets.

Design choices:
- Chunks never cross a chapter boundary (`chapters.py`), so every chunk belongs to exactly one chapter.
- Chunking uses langchain-text-splitters' RecursiveCharacterTextSplitter (no overlap) with a token length
  function over the model's tokenizer (`add_special_tokens=False`), separators tried in order: paragraph (blank
  line, LF or CRLF), line, sentence end (`. `, `? `, `! `, CJK `。！？`), space, character. Pieces are stripped by
  the splitter and mapped back with `text.find(piece, cursor)`; `doc.text[start:end] == chunk.text` is asserted.
- Performance: chapters are pre-cut into blocks of ≤ `120 × chunk_tokens` characters at paragraph (else line,
  else space) breaks, so the splitter never sees a huge string and memory stays bounded. Per block, the cache
  of the length function is pre-filled in batches (`TokenCounter.prewarm` mirrors the splitter's recursion), so
  the splitter's calls are dict look-ups; strings longer than chunk_tokens × (longest vocabulary entry) chars
  are "too long" without tokenizing (a safe lower bound that cannot change any decision). Every final chunk is
  re-counted in batches; the rare chunk whose merged count exceeds the limit (token counts are not exactly
  additive) is split again with a smaller target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ..errors import SettingsError
from ..settings import MIN_CHUNK_TOKENS
from .chapters import Chapter, find_chapters, fixed_sections
from .load import Document

SEPARATORS = [
    r"\r?\n(?:[ \t]*\r?\n)+",  # paragraph: one or more blank lines
    r"\r?\n",  # line
    r"[.?!][\"'”’)\]_*]*[ \t]+|[。！？]",  # sentence end (+ closing quotes/brackets)
    r"[ \t]+",  # word
    "",  # character
]


@dataclass
class Chunk:
    ordinal: int  # 0-based over the document
    chapter: int  # Chapter.index
    chapter_title: str
    char_start: int
    char_end: int
    line_start: int  # 1-based, inclusive
    line_end: int  # 1-based, inclusive
    tokens: int
    text: str


class TokenCounter:
    """Counts tokens like `len(tokenizer.encode(s, add_special_tokens=False))`, fast and cached."""

    def __init__(self, tokenizer: Any, limit: int):
        self.tokenizer = tokenizer
        self.limit = limit
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None and (backend.truncation or backend.padding):
            backend = None
        self.backend = backend
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        # For a byte-level BPE a vocabulary entry of n symbols decodes to ≤ n characters, so no token covers more
        # than `max_chars` characters and len(s) / max_chars is a lower bound on the count.
        self.max_chars = max((len(t) for t in vocab), default=0) + 1 if vocab else 0
        self.cache: dict[str, int] = {}

    def _encode(self, s: str) -> int:
        if self.backend is not None:
            return len(self.backend.encode(s, add_special_tokens=False).ids)
        return len(self.tokenizer.encode(s, add_special_tokens=False))

    def __call__(self, s: str) -> int:
        n = self.cache.get(s)
        if n is None:
            if self.max_chars and len(s) > self.limit * self.max_chars:
                return len(s) // self.max_chars  # > limit without tokenizing: the splitter only needs "too long"
            n = self.cache[s] = self._encode(s)
        return n

    def batch(self, texts: list[str], group: int = 256) -> list[int]:
        """Token counts of many texts: one Rust call per `group` texts (both cores, bounded memory)."""
        if self.backend is None:
            return [len(self.tokenizer.encode(t, add_special_tokens=False)) for t in texts]
        enc = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch
        out: list[int] = []
        for i in range(0, len(texts), group):
            out.extend(len(e.ids) for e in enc(texts[i:i + group], add_special_tokens=False))
        return out

    def prewarm(self, block: str, separators: list[str]) -> None:
        """Fill the cache with every count RecursiveCharacterTextSplitter will ask for on `block`, in batches.

        Mirrors its recursion level by level: split with the first separator that matches, count the pieces,
        recurse into those ≥ limit with the remaining separators (the per-character level is left to the splitter).
        """
        self.cache[""] = 0
        frontier = [(block, separators)]
        while frontier:
            pieces = []
            for seg, seps in frontier:
                for i, sep in enumerate(seps):
                    if sep and re.search(sep, seg):
                        pieces.extend((p, seps[i + 1:]) for p in _split_keep_end(seg, sep))
                        break
            todo = list({p for p, _ in pieces if p not in self.cache and len(p) <= self.limit * self.max_chars})
            self.cache.update(zip(todo, self.batch(todo)))
            frontier = [(p, seps) for p, seps in pieces if self(p) >= self.limit and any(seps)]


def _split_keep_end(text: str, sep: str) -> list[str]:
    """re.split keeping each separator at the end of the piece before it (as keep_separator="end" does)."""
    parts = re.split(f"({sep})", text)
    out = [parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2)]
    if len(parts) % 2:
        out.append(parts[-1])
    return [p for p in out if p]


def _splitter(counter: TokenCounter, size: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        separators=SEPARATORS, is_separator_regex=True, keep_separator="end", chunk_size=size, chunk_overlap=0,
        length_function=counter, strip_whitespace=True)


def _pieces(text: str, start: int, end: int, splitter: RecursiveCharacterTextSplitter) -> list[tuple[int, int]]:
    """Split text[start:end] and map each (stripped) piece back to exact offsets."""
    block = text[start:end]
    out = []
    cursor = 0
    for piece in splitter.split_text(block):
        i = block.find(piece, cursor)
        assert i >= 0 and not block[cursor:i].strip(), "splitter pieces must be in order with only space between"
        out.append((start + i, start + i + len(piece)))
        cursor = i + len(piece)
    assert not block[cursor:].strip(), "splitter dropped text"
    return out


def chunk_document(doc: Document, tokenizer: Any, chunk_tokens: int = 512,
                   chapters: list[Chapter] | None = None) -> tuple[list[Chapter], list[Chunk]]:
    """Chapters (found, unless given) and ≤ chunk_tokens-token chunks covering the body in order."""
    if chunk_tokens < MIN_CHUNK_TOKENS:
        raise SettingsError(f"chunk size {chunk_tokens} tokens is too small — use at least {MIN_CHUNK_TOKENS}")
    chapters = chapters if chapters is not None else find_chapters(doc)
    counter = TokenCounter(tokenizer, chunk_tokens)
    splitter = _splitter(counter, chunk_tokens)
    block_chars = max(16_000, 120 * chunk_tokens)
    text = doc.text
    spans: list[tuple[int, int, int]] = []  # (chapter index, start, end)
    for ch in chapters:
        for a, b in fixed_sections(doc, ch.char_start, ch.char_end, block_chars):
            if text[a:b].strip():
                counter.prewarm(text[a:b], SEPARATORS)
                spans.extend((ch.index, s, e) for s, e in _pieces(text, a, b, splitter))
            counter.cache.clear()
    # Re-count every chunk in one batch; split again the few whose merged count overshoots.
    counts = counter.batch([text[s:e] for _, s, e in spans])
    final: list[tuple[int, int, int, int]] = []
    for (ci, s, e), n in zip(spans, counts):
        if n <= chunk_tokens:
            final.append((ci, s, e, n))
        else:
            final.extend((ci, s2, e2, n2) for s2, e2, n2 in _resplit(text, s, e, counter, chunk_tokens))
    chunks = []
    for k, (ci, s, e, n) in enumerate(final):
        ch = chapters[ci]
        assert ch.char_start <= s < e <= ch.char_end, (ch, s, e)
        chunks.append(Chunk(ordinal=k, chapter=ch.index, chapter_title=ch.title, char_start=s, char_end=e,
                            line_start=doc.line_of(s), line_end=doc.line_of(e - 1), tokens=n, text=text[s:e]))
    for a, b in zip(chunks, chunks[1:]):
        assert a.char_end <= b.char_start and not text[a.char_end:b.char_start].strip()
    return chapters, chunks


def _resplit(text: str, s: int, e: int, counter: TokenCounter, limit: int) -> list[tuple[int, int, int]]:
    size = limit
    while True:
        size = max(1, int(size * 0.85))
        counter.cache.clear()
        parts = _pieces(text, s, e, _splitter(counter, size))
        ns = counter.batch([text[a:b] for a, b in parts])
        if all(n <= limit for n in ns) or size == 1:
            return [(a, b, n) for (a, b), n in zip(parts, ns)]
