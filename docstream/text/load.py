"""Load a document from disk: bytes → decoded text with exact offsets, a line index and the part to read.

Design choices:
- `Document.text` is the whole decoded file with line endings kept exactly as they are (CRLF stays CRLF,
  mixed stays mixed), so every citation is a `(char_start, char_end)` slice of `text` and `quote()` is a slice.
- A byte-order mark is *not* part of `text`: it is stripped while decoding, and `encoding` says it was there
  (`utf-8-sig`, `utf-16-le`, `utf-16-be`, `utf-32-le`, `utf-32-be`). Offsets are into the decoded text (code
  points), never into the raw bytes; `sha256` is of the raw bytes, so it names the file's exact content.
- Decoding: a BOM decides; else strict UTF-8; else cp1252, then latin-1 (always succeeds), each fallback with a
  one-line note in `warnings` that the CLI prints.
- Binary files (other than PDF and EPUB, recognised first) are refused before decoding: NUL bytes (unless
  UTF-16/32 with a BOM), or more than 5% control bytes in the first 64 KB (PNG, zip, executables…).
- Project Gutenberg files: `body_start`/`body_end` are the text between the `*** START OF THE/THIS PROJECT
  GUTENBERG EBOOK … ***` and `*** END OF … ***` lines (the marker lines themselves are excluded); otherwise the
  whole text, less the transcriber's credit lines it opens with ("Produced by …"). The licence header and footer
  stay in `text`, so offsets match the file on disk.
- `line_of()` uses a precomputed `array('q')` of line-start offsets and `bisect`: '\\n' and '\\r\\n' end a line
  (a lone '\\r' does not). A 50 MB file without newlines costs the text plus one entry.
- One loader per format. The format is decided by content first (`sniff`: `%PDF-` in the first KB, a zip whose
  `mimetype` is application/epub+zip or that holds META-INF/container.xml, `<!DOCTYPE html`/`<html` at the
  start of the text), then by suffix (`LOADERS`): a `.txt` that is really a PDF is read as the PDF. Unknown
  suffixes are read as text only if they decode cleanly as UTF-8/UTF-16; otherwise they are refused. Other
  binaries (PNG, a plain zip) are still refused as binary.
- EPUB, HTML and PDF (`epub.py`, `markup.py`, `pdf.py`) become a Document like any other: `text` is the
  extracted text (all offsets and quotes index it), `sha256` stays the hash of the raw file. Two optional
  tables carry the original's structure: `toc` (chapters from the EPUB navigation, HTML headings or the PDF
  outline, fed to `chapters.py`) and `parts` (where each stretch of `text` came from: a PDF page or an EPUB spine
  item), which `where()` turns into "p. 37, line 12" or "chapter3.xhtml+1234" for citations.
- Every refusal is an `InputError` (exit 2) whose one-line message says what to do.
"""
from __future__ import annotations

import codecs
import hashlib
import re
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError

SUPPORTED = ".txt, .md, .epub, .html and .pdf files"
SNIFF_BYTES = 64 * 1024
MAX_CONTROL_SHARE = 0.05
# C0 control bytes that never appear in text (tab, LF, VT, FF, CR and ESC are allowed).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27)) + b"\x7f"
_BOMS = [  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
_GUTENBERG_START = re.compile(
    r"^[ \t]*\*{3}[ \t]*START OF (?:THE |THIS )?PROJECT GUTENBERG E-?BOOK[^\r\n]*(?:\r?\n|$)", re.M | re.I)
_GUTENBERG_END = re.compile(r"^[ \t]*\*{3}[ \t]*END OF (?:THE |THIS )?PROJECT GUTENBERG E-?BOOK", re.M | re.I)
_GUTENBERG_TITLE = re.compile(r"^Title:[ \t]*(\S[^\r\n]*?)[ \t]*\r?$", re.M)
# Credits a transcriber put above a text that has no Gutenberg header ("Produced by …", "Distributed
# Proofreading Team at http://www.pgdp.net"): not part of the work, so not read.
_CREDIT_LINES = re.compile(r"\A(?:[ \t]*(?:\r?\n|(?:Produced by|E-?text prepared by|Distributed Proofreading|"
                           r"Transcribed by|https?://)[^\r\n]*(?:\r?\n|\Z)))+", re.I)
_MD_TITLE = re.compile(r"^[ ]{0,3}#[ \t]+(\S[^\r\n]*?)[ \t#]*\r?$", re.M)


@dataclass(frozen=True)
class TocEntry:
    """A chapter start found in the original's own navigation: `text[char_start:char_end]` is its heading (or
    char_end == char_start when the navigation points at a position only); level 1 is the top."""

    char_start: int
    char_end: int
    level: int
    title: str


@dataclass(frozen=True)
class Part:
    """A stretch of `text` that came from one place of the original, from `char_start` to the next part:
    `kind` "page" (`name` is the 1-based page number) or "item" (`name` is the EPUB spine item's path)."""

    char_start: int
    kind: str
    name: str


@dataclass
class Document:
    """A decoded text file. `text[body_start:body_end]` is the part to read; all offsets index `text`."""

    path: Path
    text: str
    encoding: str
    sha256: str
    body_start: int
    body_end: int
    title: str
    warnings: list[str] = field(default_factory=list)
    line_starts: array = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    kind: str = "text"  # text | markdown | html | epub | pdf
    toc: list[TocEntry] | None = field(default=None, repr=False)  # chapters from the original's navigation
    parts: list[Part] | None = field(default=None, repr=False)  # sorted by char_start; the first starts at 0

    def __post_init__(self) -> None:
        if self.line_starts is None:
            self.line_starts = line_starts(self.text)
        assert 0 <= self.body_start <= self.body_end <= len(self.text), (self.body_start, self.body_end)

    @property
    def body(self) -> str:
        return self.text[self.body_start:self.body_end]

    @property
    def n_lines(self) -> int:
        return len(self.line_starts)

    def line_of(self, char_offset: int) -> int:
        """1-based line number holding `char_offset` (an offset equal to len(text) is on the last line)."""
        assert 0 <= char_offset <= len(self.text), char_offset
        return bisect_right(self.line_starts, char_offset)

    def quote(self, start: int, end: int) -> str:
        """The exact text of a cited span."""
        assert 0 <= start <= end <= len(self.text), (start, end)
        return self.text[start:end]

    def position(self, char_offset: int) -> dict[str, int | str] | None:
        """Where `char_offset` is in the original: {"page", "line"} (PDF, both 1-based), {"item", "offset"}
        (EPUB: spine item path, character offset into that item's extracted text); None for text files."""
        if not self.parts:
            return None
        i = bisect_right([p.char_start for p in self.parts], char_offset) - 1
        part = self.parts[max(i, 0)]
        if part.kind == "page":
            return {"page": int(part.name), "line": self.text.count("\n", part.char_start, char_offset) + 1}
        return {"item": part.name, "offset": char_offset - part.char_start}

    def where(self, char_offset: int) -> str | None:
        """`position()` as a person would look for it: "p. 37, line 12" or "chapter3.xhtml+1234"."""
        pos = self.position(char_offset)
        if pos is None:
            return None
        return f"p. {pos['page']}, line {pos['line']}" if "page" in pos else f"{pos['item']}+{pos['offset']}"


def line_starts(text: str) -> array:
    """Offsets where each line starts: 0, then one past every '\\n' (so '\\r\\n' and '\\n' both end a line)."""
    starts = array("q", [0])
    i = text.find("\n")
    while i != -1:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return starts


# ---------------------------------------------------------------------------------------------------------
# reading and decoding


def _read_bytes(path: Path) -> bytes:
    shown = f'"{path}"'
    if not path.exists():
        raise InputError(f"No such file: {path} — check the path")
    if path.is_dir():
        raise InputError(f"{shown} is a directory — pass one .txt or .md file")
    if not path.is_file():  # a FIFO, socket or device would block or never end
        raise InputError(f"{shown} is not a regular file — save the text to a .txt or .md file and pass that")
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise InputError(f"{shown} cannot be read (permission denied) — check the file's permissions") from None
    except OSError as e:
        raise InputError(f"{shown} cannot be read ({e.strerror or e.__class__.__name__}) — check the file") from None
    if not raw:
        raise InputError(f"{shown} is empty — there is nothing to read; pass a file that contains text")
    return raw


def _bom(raw: bytes) -> tuple[str, int] | None:
    for bom, enc in _BOMS:
        if raw.startswith(bom):
            return enc, len(bom)
    return None


def _refuse_binary(path: Path, raw: bytes) -> None:
    shown = f'"{path.name}"'
    if b"\x00" in raw:
        raise InputError(f"{shown} looks binary (NUL bytes) — docstream reads {SUPPORTED}; convert it to plain text "
                         "first")
    sample = raw[:SNIFF_BYTES]
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    if controls > MAX_CONTROL_SHARE * len(sample):
        raise InputError(f"{shown} looks binary ({controls / len(sample):.0%} control bytes) — "
                         f"docstream reads {SUPPORTED}; convert it to plain text first")


def decode(path: Path, raw: bytes, strict: bool = False) -> tuple[str, str, list[str]]:
    """Decode raw bytes to (text, encoding, warnings). `strict`: refuse instead of falling back to cp1252."""
    shown = f'"{path.name}"'
    bom = _bom(raw)
    if bom is not None:
        enc, n = bom
        try:
            text = raw[n:].decode(enc.replace("-sig", ""))
        except UnicodeDecodeError as e:
            raise InputError(f"{shown} starts with a {enc} byte-order mark but does not decode at byte {e.start + n}"
                             f" — re-save it as UTF-8") from None
        if "\x00" in text:
            raise InputError(f"{shown} looks binary (NUL characters) — docstream reads {SUPPORTED}; convert it to "
                             "plain text first")
        return text, enc, []
    _refuse_binary(path, raw)
    try:
        return raw.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError as e:
        if strict:
            raise InputError(f"{shown} is not UTF-8 text (byte {e.start}) — docstream reads {SUPPORTED}; convert it "
                             "to plain UTF-8 text first") from None
        bad = e.start
    for enc in ("cp1252", "latin-1"):
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        return text, enc, [f"{shown} is not valid UTF-8 (byte {bad}); read it as {enc} — re-save it as UTF-8 "
                           f"if characters look wrong"]
    raise AssertionError("latin-1 decodes any bytes")


def gutenberg_body(text: str) -> tuple[int, int] | None:
    """(start, end) of the book between the Project Gutenberg START and END marker lines, or None."""
    m = _GUTENBERG_START.search(text)
    if m is None:
        return None
    start = m.end()
    e = _GUTENBERG_END.search(text, start)
    end = e.start() if e else len(text)
    return (start, end) if text[start:end].strip() else None


def _make(path: Path, raw: bytes, text: str, encoding: str, warnings: list[str],
          title_of: Callable[[str, int], str | None], **extra: Any) -> Document:
    if not text.strip():
        what = "holds only whitespace" if extra.get("kind", "text") in ("text", "markdown") else "holds no text"
        raise InputError(f'"{path.name}" {what} — there is nothing to read; pass a file that contains text')
    span = gutenberg_body(text)
    start, end = span if span else (0, len(text))
    if not span and (credit := _CREDIT_LINES.match(text)) and text[credit.end():].strip():
        start = credit.end()
    if span and end == len(text):
        warnings.append(f'"{path.name}" has a Project Gutenberg START line but no END line; read to the end')
    title = title_of(text, start) or path.stem
    return Document(path=path, text=text, encoding=encoding, sha256=hashlib.sha256(raw).hexdigest(),
                    body_start=start, body_end=end, title=title, warnings=warnings, **extra)


def _gutenberg_title(text: str, body_start: int) -> str | None:
    if body_start == 0:
        return None
    m = _GUTENBERG_TITLE.search(text, 0, body_start)
    return m.group(1) if m else None


def _markdown_title(text: str, body_start: int) -> str | None:
    m = _MD_TITLE.search(text, body_start, body_start + 200_000)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------------------
# one loader per format


def load_txt(path: Path, raw: bytes) -> Document:
    text, enc, warnings = decode(path, raw)
    return _make(path, raw, text, enc, warnings,
                 lambda t, s: _gutenberg_title(t, s) or _markdown_title(t, s))


def load_markdown(path: Path, raw: bytes) -> Document:
    text, enc, warnings = decode(path, raw)
    return _make(path, raw, text, enc, warnings,
                 lambda t, s: _markdown_title(t, s) or _gutenberg_title(t, s), kind="markdown")


def load_other(path: Path, raw: bytes) -> Document:
    """Any other suffix: read it only if it is clean UTF-8/UTF-16 text (a .pdf or .docx is refused)."""
    text, enc, warnings = decode(path, raw, strict=True)
    return _make(path, raw, text, enc, warnings,
                 lambda t, s: _gutenberg_title(t, s) or _markdown_title(t, s))


LOADERS: dict[str, Callable[[Path, bytes], Document]] = {
    ".txt": load_txt,
    ".text": load_txt,
    ".md": load_markdown,
    ".markdown": load_markdown,
}


def _load_epub(path: Path, raw: bytes) -> Document:
    from .epub import load_epub

    return load_epub(path, raw)


def _load_html(path: Path, raw: bytes) -> Document:
    from .markup import load_html

    return load_html(path, raw)


def _load_pdf(path: Path, raw: bytes) -> Document:
    from .pdf import load_pdf

    return load_pdf(path, raw)


LOADERS.update({".epub": _load_epub, ".html": _load_html, ".htm": _load_html, ".xhtml": _load_html,
                ".pdf": _load_pdf})
_BY_KIND = {"pdf": _load_pdf, "epub": _load_epub, "html": _load_html}
_HTML_START = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!DOCTYPE\s+html|<html[\s>])",
                         re.I | re.S)


def sniff(raw: bytes) -> str | None:
    """The format the bytes are, by content: "pdf", "epub", "html", or None (decide by suffix)."""
    if b"%PDF-" in raw[:1024]:
        return "pdf"
    if raw.startswith(b"PK\x03\x04"):
        # EPUB's first member is an uncompressed `mimetype` file (OCF); a zip that merely holds a container.xml
        # (a sloppy export) is an EPUB too. A damaged archive still shows the first local header.
        if raw[30:38] == b"mimetype" and b"application/epub+zip" in raw[38:100]:
            return "epub"
        if b"META-INF/container.xml" in raw:
            return "epub"
        return None
    if _HTML_START.match(raw[:4096]):
        return "html"
    return None


def load(path: str | Path) -> Document:
    """Read and decode a document. Raises InputError with a one-line fix for anything it cannot read."""
    path = Path(path).expanduser()
    raw = _read_bytes(path)
    kind = sniff(raw)
    loader = _BY_KIND[kind] if kind else LOADERS.get(path.suffix.lower(), load_other)
    doc = loader(path, raw)
    del raw
    assert doc.text and doc.line_starts[0] == 0
    return doc
