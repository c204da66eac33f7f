"""PDF → a Document: the text layer page by page, chapters from the outline, pages and lines for citations.

Design choices:
- pypdf (BSD-3, pure Python, no system library): text per page, the outline (bookmarks) with page numbers,
  encryption. PyMuPDF would be faster but is AGPL; pdfplumber/pdfminer.six give layout detail we do not need.
  Its plain extraction mode gives lines in content-stream order, which for books and papers is reading order.
- `Document.text` is the pages' text joined by one blank line (a page break is a paragraph break for the
  chunker); within a page, pypdf's lines are kept with trailing spaces removed, CR/CRLF as LF, and NUL and other
  control characters (never text) dropped. `parts` records where each page starts, so a citation says
  "p. 37, line 12": the 1-based page of the file and the line on that page, counted in the extracted text.
- Chapters: the outline, every level (the nesting depth is the level; `chapters.py` keeps the shallowest level
  used at least twice). An entry starts where its title occurs on its page (words matched with any whitespace
  between, case-insensitive), else at the top of the page. No outline: the plain-text heading detection.
- Refused, each with one line that says what to do: a damaged file, a password (user password) that the empty
  password does not open, AES encryption when the `cryptography` package is missing (pypdf needs it for AES;
  RC4 works without), and a file with no text layer on any page (scanned: OCR it first). When fewer than half the
  pages have text, a warning names how many have none.
- Title: the document information's /Title, else the Gutenberg `Title:` line, else the file name.
"""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from .load import Document, Part, TocEntry, _gutenberg_title, _make

PAGE_SEP = "\n\n"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAILING = re.compile(r"[ \t]+(?=\n)|[ \t]+\Z")
_FIX_DAMAGED = "re-download it, or export it as PDF again"


def _reader(path: Path, raw: bytes) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError, PyPdfError

    name = path.name
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf logs every repaired xref; we report what matters
    try:
        reader = PdfReader(io.BytesIO(raw), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except DependencyError:
                raise InputError(f'"{name}" is encrypted with AES — install the cryptography package (`pip install '
                                 f'cryptography`) or save an unencrypted copy (`qpdf --decrypt "{name}" out.pdf`)'
                                 ) from None
            if not opened:
                raise InputError(f'"{name}" is password-protected — docstream cannot open encrypted PDFs; save a copy '
                                 f'without the password first (e.g. `qpdf --password=PASSWORD --decrypt "{name}" '
                                 "out.pdf`)")
        n = len(reader.pages)
    except InputError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, OSError, AssertionError) as e:
        why = " ".join(str(e).split())[:120] or type(e).__name__
        raise InputError(f'"{name}" is not a readable PDF (damaged: {why}) — {_FIX_DAMAGED}') from None
    if n == 0:
        raise InputError(f'"{name}" is a PDF with no pages — {_FIX_DAMAGED}')
    return reader


def _page_text(page: Any) -> str:
    try:
        t = page.extract_text() or ""
    except Exception:  # noqa: BLE001 - one unreadable page must not lose the book; it reads as empty
        return ""
    t = _CONTROL.sub("", t.replace("\r\n", "\n").replace("\r", "\n"))
    return _TRAILING.sub("", t).strip("\n")


def load_pdf(path: Path, raw: bytes) -> Document:
    """Read a PDF's text layer into one text (see the module docstring)."""
    name = path.name
    reader = _reader(path, raw)
    pieces: list[str] = []
    parts: list[Part] = []
    pos = 0
    empty = 0
    for i, page in enumerate(reader.pages):
        t = _page_text(page)
        if not t.strip():
            empty += 1
        if i:
            pieces.append(PAGE_SEP)
            pos += len(PAGE_SEP)
        parts.append(Part(pos, "page", str(i + 1)))
        pieces.append(t)
        pos += len(t)
    n = len(parts)
    text = "".join(pieces)
    if not text.strip():
        raise InputError(f'"{name}" has no text layer ({n} scanned page{"s" * (n != 1)}) — run OCR first, e.g. '
                         f'`ocrmypdf "{name}" ocr.pdf`, and pass the result')
    warnings = []
    if empty * 2 > n:
        warnings.append(f'"{name}": {empty} of {n} pages have no text layer (scanned?) and are not read — run OCR '
                        f'(e.g. `ocrmypdf --skip-text "{name}" ocr.pdf`) to read them too')
    toc = _outline(reader, text, parts) or None
    try:
        meta_title = (reader.metadata or {}).get("/Title")
        meta_title = " ".join(str(meta_title).split()) if meta_title else None
    except Exception:  # noqa: BLE001 - broken metadata only loses the title
        meta_title = None
    return _make(path, raw, text, "pdf", warnings, lambda t, s: meta_title or _gutenberg_title(t, s), kind="pdf",
                 toc=toc, parts=parts)


def _title_pattern(title: str) -> re.Pattern[str] | None:
    words = title.split()
    if not words:
        return None
    return re.compile(r"\s+".join(re.escape(w) for w in words), re.I)


def _outline(reader: Any, text: str, parts: list[Part]) -> list[TocEntry]:
    """Chapter starts from the outline: (page, title) entries placed where the title is on its page."""
    flat: list[tuple[int, int, str]] = []  # (level, 0-based page, title)

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
                title = " ".join(str(item.title or "").split())
            except Exception:  # noqa: BLE001 - an entry pointing nowhere is skipped
                continue
            if page is not None and 0 <= page < len(parts) and title:
                flat.append((level, page, title))

    try:
        walk(reader.outline, 1)
    except Exception:  # noqa: BLE001 - a broken outline means: find headings in the text instead
        return []
    out: list[TocEntry] = []
    last: dict[int, int] = {}  # page → offset of the latest entry placed on it (entries come in order)
    for level, page, title in flat:
        start = parts[page].char_start
        end = parts[page + 1].char_start - len(PAGE_SEP) if page + 1 < len(parts) else len(text)
        rx = _title_pattern(title)
        m = rx.search(text, last.get(page, start), end) if rx else None
        off, off_end = (m.start(), m.end()) if m else (start, start)
        last[page] = off
        out.append(TocEntry(off, off_end, level, title))
    out.sort(key=lambda t: t.char_start)
    return out
