"""HTML and XHTML → plain text with exact offsets, anchors and headings; the HTML loader.

Design choices:
- lxml (BSD, libxml2: C speed, tolerant HTML parser, namespaced XHTML) parses; our own walker extracts, so the
  extracted text — which every offset in the index points into — depends on our code, not on a library's
  text rendering. XHTML (EPUB content documents) is parsed as XML first (namespaces, self-closing tags); a
  document that is not well-formed XML is parsed again with the HTML parser.
- Text in document order. Block elements (p, div, h1–h6, li, blockquote, tr, …) are paragraphs separated by one
  blank line; `<br>` is a line break; inline whitespace collapses to one space (HTML's rendering rule); `<pre>`
  keeps its whitespace. `script`, `style`, `head`, `template`, `noscript` and `svg` are not text.
- While extracting, the walker records where each element `id` lands in the text (`anchors`, the targets of
  EPUB navigation links) and the span of every `h1`–`h6` heading (`headings`: start, end, level, title).
- The HTML loader decodes like a text file (BOM, then the `<meta charset>` if it names a codec Python knows, then
  UTF-8 with the cp1252 fallback), takes the title from `<title>` (else the first `<h1>`), and turns the h1–h3
  headings into the document's `toc`; `chapters.py` keeps the shallowest level used at least twice as chapters
  (a lone `<h1>` that repeats the `<title>` is the book's title, not a chapter or part). No headings: the
  plain-text heading detection runs on the extracted text.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree, html

from ..errors import InputError
from .load import Document, TocEntry, _bom, _make, decode

BLOCK = frozenset("""address article aside blockquote body caption center dd details dialog div dl dt fieldset
    figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr li main nav ol p pre section summary table
    tbody td tfoot th thead tr ul""".split())
SKIP = frozenset("script style head template noscript svg title".split())
HEADINGS = {f"h{i}": i for i in range(1, 7)}
TOC_LEVELS = 3  # HTML headings h1–h3 are chapter candidates
_SPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)
_XML_DECL = re.compile(r"\A\s*<\?xml[^>]*\?>")


@dataclass
class Extracted:
    """Text pulled out of one (X)HTML document; offsets are into `text`."""

    text: str
    anchors: dict[str, int] = field(default_factory=dict)  # element id → offset
    headings: list[tuple[int, int, int, str]] = field(default_factory=list)  # (start, end, level, title)
    title: str | None = None


class _Walker:
    """Writes text with pending separators, so anchors and headings get the offset of the text that follows."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.pos = 0
        self.need = 0  # newlines owed before the next text: 1 (line break) or 2 (paragraph)
        self.space = False  # a collapsed space owed before the next text
        self.at_line_start = True
        self.pending_ids: list[str] = []
        self.anchors: dict[str, int] = {}
        self.open_heads: list[list[Any]] = []  # [level, start or None]
        self.headings: list[tuple[int, int, int, str]] = []

    def _write(self, s: str) -> None:
        self.out.append(s)
        self.pos += len(s)

    def _begin_text(self) -> None:
        if self.need and self.pos:
            self._write("\n" * self.need)
            self.at_line_start = True
        elif self.space and not self.at_line_start:
            self._write(" ")
        self.need, self.space = 0, False
        for i in self.pending_ids:
            self.anchors.setdefault(i, self.pos)
        self.pending_ids.clear()
        for h in self.open_heads:
            if h[1] is None:
                h[1] = self.pos

    def text(self, s: str | None, pre: bool = False) -> None:
        if not s:
            return
        if pre:
            s = s.replace("\r\n", "\n").replace("\r", "\n")
            if not s.strip("\n"):
                self.need = max(self.need, min(2, s.count("\n")))
                return
            self._begin_text()
            self._write(s)
            self.at_line_start = s.endswith("\n")
            return
        core = _SPACE.sub(" ", s)
        if not core.strip():
            self.space = True
            return
        if core[0] == " ":
            self.space = True
        self._begin_text()
        body = core.strip(" ")
        self._write(body)
        self.at_line_start = False
        self.space = core[-1] == " "

    def block(self, n: int = 2) -> None:
        self.need = max(self.need, n) if self.pos else 0
        self.space = False

    def result(self) -> tuple[str, dict[str, int], list[tuple[int, int, int, str]]]:
        for i in self.pending_ids:
            self.anchors.setdefault(i, self.pos)
        return "".join(self.out), self.anchors, self.headings


def _local(tag: Any) -> str | None:
    if not isinstance(tag, str):
        return None  # comments, processing instructions, entities
    return tag.rsplit("}", 1)[-1].lower()


def _walk(el: Any, w: _Walker, pre: bool = False) -> None:
    name = _local(el.tag)
    if name is None or name in SKIP:
        return
    ident = el.get("id") or (el.get("name") if name == "a" else None)
    if ident:
        w.pending_ids.append(ident)
    is_block = name in BLOCK
    level = HEADINGS.get(name)
    pre = pre or name == "pre"
    if is_block:
        w.block()
    if level:
        w.open_heads.append([level, None])
    if name == "br":
        w.block(1)
    w.text(el.text, pre)
    for child in el:
        _walk(child, w, pre)
        w.text(child.tail, pre)
    if level:
        _, start = w.open_heads.pop()
        if start is not None and w.pos > start:
            title = " ".join(_tail_text(w, start).split())
            w.headings.append((start, w.pos, level, title))
    if is_block:
        w.block()


def _tail_text(w: _Walker, start: int) -> str:
    """The written text from `start` to the end, reading back only the last pieces."""
    n, pieces = w.pos, []
    for s in reversed(w.out):
        pieces.append(s)
        n -= len(s)
        if n <= start:
            break
    return "".join(reversed(pieces))[start - n:]


def parse(data: bytes | str, xml_first: bool = True) -> Any:
    """The root element of an (X)HTML document: XML parser first (XHTML), else lxml's HTML parser."""
    if xml_first and isinstance(data, bytes):
        try:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, load_dtd=False)
            return etree.fromstring(data, parser)
        except etree.XMLSyntaxError:
            pass
    if isinstance(data, str):
        data = _XML_DECL.sub("", data, count=1)
    try:
        return html.document_fromstring(data, parser=html.HTMLParser(huge_tree=True, no_network=True))
    except (etree.ParserError, ValueError):
        return None


def extract(root: Any) -> Extracted:
    """Text, anchors and headings of a parsed (X)HTML document (the <body>, else the whole tree)."""
    if root is None:
        return Extracted("")
    body = next((e for e in root.iter() if _local(e.tag) == "body"), root)
    title_el = next((e for e in root.iter() if _local(e.tag) == "title"), None)
    title = " ".join("".join(title_el.itertext()).split()) if title_el is not None else None
    w = _Walker()
    _walk(body, w)
    text, anchors, heads = w.result()
    return Extracted(text=text, anchors=anchors, headings=sorted(heads), title=title or None)


def _decode_html(path: Path, raw: bytes) -> tuple[str, str, list[str]]:
    if _bom(raw) is None:
        m = _META_CHARSET.search(raw[:4096])
        if m:
            try:
                enc = codecs.lookup(m.group(1).decode("ascii")).name
                return raw.decode(enc), enc, []
            except (LookupError, UnicodeDecodeError):
                pass
    return decode(path, raw)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def load_html(path: Path, raw: bytes) -> Document:
    """An HTML file: its text in order, chapters from its h1–h3 headings (see the module docstring)."""
    text, encoding, warnings = _decode_html(path, raw)
    root = parse(text, xml_first=False)
    if root is None:
        raise InputError(f'"{path.name}" is not readable HTML — save the page again (or as plain text) and pass that')
    ex = extract(root)
    heads = [TocEntry(s, e, lv, t) for s, e, lv, t in ex.headings if lv <= TOC_LEVELS and t]
    h1s = [h for h in heads if h.level == 1]
    h1 = h1s[0].title if h1s else None
    if len(h1s) == 1 and (ex.title is None or _same(h1s[0].title, ex.title)):
        heads.remove(h1s[0])  # the page's one <h1> is the book's title, not a part: front matter stays front matter
    return _make(path, raw, ex.text, encoding, warnings, lambda t, s: ex.title or h1, kind="html",
                 toc=heads or None)
