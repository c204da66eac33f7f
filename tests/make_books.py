"""Build real EPUB, HTML and PDF books from a public-domain text file (for tests/test_formats.py and demos).

    python tests/make_books.py samples/time-machine.txt /tmp/formats/time-machine.epub   # or .html / .pdf

The text's chapters are found as docstream finds them in the .txt (`find_chapters`); each chapter becomes an
XHTML spine item (EPUB: zip written by hand as the OCF spec lays it out, with an EPUB 3 nav document and an
EPUB 2 NCX), an `<h2>` section (HTML), or a run of pages whose first heading is a bookmark in the outline (PDF,
written with reportlab; chapters start mid-page, as in a typeset book that does not break pages).
"""
from __future__ import annotations

import html
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from docstream.text.chapters import find_chapters
from docstream.text.load import load

_PARA = re.compile(r"\r?\n(?:[ \t]*\r?\n)+")
_WORDS = re.compile(r"\w+")


@dataclass
class Book:
    title: str
    front: list[str]  # paragraphs before the first chapter heading (title page, contents)
    chapters: list[tuple[str, list[str]]]  # (title, paragraphs)


def _words(s: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(s)]


def book_of(txt: str | Path) -> Book:
    """The book's chapters and paragraphs (lines unwrapped), from docstream's own reading of the text file."""
    doc = load(txt)
    front: list[str] = []
    chapters = []
    for ch in find_chapters(doc):
        paras = [" ".join(p.split()) for p in _PARA.split(doc.text[ch.char_start:ch.char_end]) if p.strip()]
        want = _words(ch.title)
        for k in range(len(paras)):  # the heading's paragraphs ("I", "Introduction") spell the title
            got, j = [], k
            while j < len(paras) and len(got) < len(want) and want[:len(got) + len(_words(paras[j]))] == \
                    got + _words(paras[j]):
                got += _words(paras[j])
                j += 1
            if got == want:
                if ch.index == 0:
                    front = paras[:k]
                paras = paras[j:]
                break
        chapters.append((ch.title, paras))
    return Book(doc.title, front, chapters)


def _xhtml(title: str, body: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
            '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">\n'
            f"<head><title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body>\n</html>\n")


def _paras(paras: list[str]) -> str:
    return "\n".join(f"<p>{html.escape(p)}</p>" for p in paras)


def write_epub(book: Book, out: Path, *, per_file: int = 1, nav: bool = True, ncx: bool = True,
               extra: dict[str, str | bytes] | None = None) -> Path:
    """An EPUB 3 (with an EPUB 2 NCX): `per_file` chapters per spine item, each chapter an `<h2 id>`."""
    items: list[tuple[str, str]] = [("front.xhtml", _xhtml(book.title, f"<h1>{html.escape(book.title)}</h1>\n"
                                                                       + _paras(book.front)))]
    targets = []  # (title, href#id)
    for f in range(0, len(book.chapters), per_file):
        name = f"chapter{f // per_file + 1:02d}.xhtml"
        body = []
        for k, (title, paras) in enumerate(book.chapters[f:f + per_file], f + 1):
            body.append(f'<section><h2 id="ch{k}">{html.escape(title)}</h2>\n{_paras(paras)}</section>')
            targets.append((title, f"{name}#ch{k}"))
        items.append((name, _xhtml(book.chapters[f][0], "\n".join(body))))
    manifest = "\n".join(f'<item id="i{i}" href="{n}" media-type="application/xhtml+xml"/>'
                         for i, (n, _) in enumerate(items))
    if nav:
        manifest += '\n<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
    if ncx:
        manifest += '\n<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
    spine = "\n".join(f'<itemref idref="i{i}"/>' for i in range(len(items)))
    spine_toc = ' toc="ncx"' if ncx else ""
    opf = ('<?xml version="1.0" encoding="utf-8"?>\n<package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
           'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
           f'<dc:identifier id="id">urn:docstream:test</dc:identifier><dc:title>{html.escape(book.title)}</dc:title>'
           f'<dc:language>en</dc:language></metadata><manifest>{manifest}</manifest>'
           f'<spine{spine_toc}>{spine}</spine></package>')
    nav_doc = _xhtml("Contents", '<nav epub:type="toc"><h1>Contents</h1><ol>' + "".join(
        f'<li><a href="{h}">{html.escape(t)}</a></li>' for t, h in targets) + "</ol></nav>")
    ncx_doc = ('<?xml version="1.0" encoding="utf-8"?><ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" '
               'version="2005-1"><navMap>' + "".join(
                   f'<navPoint id="n{i}" playOrder="{i}"><navLabel><text>{html.escape(t)}</text></navLabel>'
                   f'<content src="{h}"/></navPoint>' for i, (t, h) in enumerate(targets, 1)) + "</navMap></ncx>")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:'
                   'tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" '
                   'media-type="application/oebps-package+xml"/></rootfiles></container>',
                   compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("OEBPS/content.opf", opf, compress_type=zipfile.ZIP_DEFLATED)
        if nav:
            z.writestr("OEBPS/nav.xhtml", nav_doc, compress_type=zipfile.ZIP_DEFLATED)
        if ncx:
            z.writestr("OEBPS/toc.ncx", ncx_doc, compress_type=zipfile.ZIP_DEFLATED)
        for n, data in items:
            z.writestr(f"OEBPS/{n}", data, compress_type=zipfile.ZIP_DEFLATED)
        for n, data in (extra or {}).items():
            z.writestr(n, data, compress_type=zipfile.ZIP_DEFLATED)
    return out


def write_html(book: Book, out: Path) -> Path:
    """One HTML page: `<h1>` title, an `<h2>` per chapter, `<p>` paragraphs."""
    body = [f"<h1>{html.escape(book.title)}</h1>", _paras(book.front)]
    body += [f"<h2>{html.escape(t)}</h2>\n{_paras(p)}" for t, p in book.chapters]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(book.title)}'
                   f'</title><style>p {{ margin: 0 }}</style></head>\n<body>\n' + "\n".join(body)
                   + "\n</body></html>\n", encoding="utf-8")
    return out


def write_pdf(book: Book, out: Path, *, outline: bool = True) -> Path:
    """A typeset PDF (reportlab): title page, then the chapters flowing on, each heading an outline entry."""
    from reportlab.lib.pagesizes import A5
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()

    class Doc(SimpleDocTemplate):
        def afterFlowable(self, flowable):  # noqa: N802 - reportlab's hook name
            if outline and getattr(flowable, "style", None) is styles["Heading2"]:
                key = f"h{id(flowable)}"
                self.canv.bookmarkPage(key)
                self.canv.addOutlineEntry(flowable.getPlainText(), key, level=0)

    story = [Paragraph(html.escape(book.title), styles["Title"])]
    story += [Paragraph(html.escape(p), styles["Normal"]) for p in book.front]
    story.append(PageBreak())
    for title, paras in book.chapters:
        story.append(Paragraph(html.escape(title), styles["Heading2"]))
        story += [Paragraph(html.escape(p), styles["BodyText"]) for p in paras]
    out.parent.mkdir(parents=True, exist_ok=True)
    Doc(str(out), pagesize=A5, title=book.title, author="docstream tests").build(story)
    return out


def main(argv: list[str]) -> None:
    src, out = Path(argv[0]), Path(argv[1])
    book = book_of(src)
    write = {".epub": write_epub, ".html": write_html, ".pdf": write_pdf}[out.suffix]
    write(book, out)
    print(f"{out}: {len(book.chapters)} chapters")


if __name__ == "__main__":
    main(sys.argv[1:])
