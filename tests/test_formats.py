"""EPUB, HTML and PDF (issue 18): real files built from The Time Machine, their chapters, citations into the
original (PDF page and line, EPUB spine item and offset) and every refusal through the CLI.

The books are written by `tests/make_books.py` (the EPUB as a zip laid out per the OCF spec, the PDF with
reportlab, chapters starting mid-page); the bad inputs with pypdf, reportlab and zipfile. Loading needs no model;
the two CLI tests that answer or read use the tiny random Llama, so they check the machinery, not the words.
"""
from __future__ import annotations

import io
import json
import re
import sqlite3
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from typer.testing import CliRunner

from docstream.ask.focus import cite
from docstream.text.sentences import sentence_windows
from docstream.cli.main import app
from docstream.text.chapters import find_chapters
from docstream.text.load import load, sniff
from make_books import book_of, write_epub, write_html, write_pdf

REPO = Path(__file__).resolve().parents[1]
TXT = REPO / "samples" / "time-machine.txt"
SMALL = ["--window", "512", "--chunk-tokens", "128"]
runner = CliRunner()
CHAPTERS = 17  # I–XVI and the Epilogue
WORDS = ["Weena", "Morlocks", "Porcelain", "sphinx", "Filby", "matches", "Epilogue"]


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    d = tmp_path_factory.mktemp("books")
    book = book_of(TXT)
    assert len(book.chapters) == CHAPTERS
    return {
        "book": book, "dir": d,
        "epub": write_epub(book, d / "tm.epub"),
        "epub-2-per-item": write_epub(book, d / "tm2.epub", per_file=2, ncx=False),
        "epub-ncx": write_epub(book, d / "tm-ncx.epub", nav=False),
        "epub-no-nav": write_epub(book, d / "tm-bare.epub", nav=False, ncx=False),
        "html": write_html(book, d / "tm.html"),
        "pdf": write_pdf(book, d / "tm.pdf"),
    }


def titles() -> list[str]:
    return [c.title for c in find_chapters(load(TXT))]


def norm(s: str) -> str:
    return " ".join(s.split())


# ---------------------------------------------------------------------------------------------------------
# text in reading order and chapters from the navigation


@pytest.mark.parametrize("kind", ["epub", "epub-2-per-item", "epub-ncx", "epub-no-nav", "html", "pdf"])
def test_chapters_and_reading_order(books, kind):
    doc = load(books[kind])
    assert doc.kind == kind.split("-")[0] and doc.title == "The Time Machine" and doc.warnings == []
    assert (doc.toc is None) == (kind == "epub-no-nav")  # no navigation: the text's own headings are found
    chapters = find_chapters(doc)
    assert [c.title for c in chapters] == titles() and len(chapters) == CHAPTERS
    pos = 0
    for ch, (title, paras) in zip(chapters, books["book"].chapters):
        # each chapter starts at its heading and holds its paragraphs, in order, whole (PDF: lines re-wrapped)
        body = doc.text[ch.char_start:ch.char_end]
        if ch.index:
            assert norm(body).startswith(title)
        for p in (paras[0], paras[len(paras) // 2], paras[-1]):
            i = norm(doc.text).find(norm(p), pos) if kind == "pdf" else doc.text.find(p, pos)
            assert i >= 0, (title, p[:60])
            pos = i
        assert norm(paras[-1]) in norm(body)


def test_epub_is_read_in_spine_order_with_items_as_parts(books):
    doc = load(books["epub-2-per-item"])
    z = zipfile.ZipFile(books["epub-2-per-item"])
    opf = z.read("OEBPS/content.opf").decode()
    spine = re.findall(r'<itemref idref="i(\d+)"/>', opf)
    assert [p.name for p in doc.parts] == ["front.xhtml"] + [f"chapter{i:02d}.xhtml" for i in range(1, 10)]
    assert len(spine) == len(doc.parts)
    starts = [p.char_start for p in doc.parts]
    assert starts == sorted(starts) and starts[0] == 0
    # chapters III and IV share chapter02.xhtml: IV is found by its anchor, mid-item
    iv = find_chapters(doc)[3]
    assert iv.title.startswith("IV.") and doc.position(iv.char_start)["item"] == "chapter02.xhtml"
    assert doc.position(iv.char_start)["offset"] > 1000


def test_pdf_pages_are_parts_and_chapters_start_mid_page(books):
    doc = load(books["pdf"])
    reader = PdfReader(books["pdf"])
    assert [p.name for p in doc.parts] == [str(i) for i in range(1, len(reader.pages) + 1)]
    mid = [c for c in find_chapters(doc)[1:] if doc.position(c.char_start)["line"] > 1]
    assert len(mid) >= 10, "reportlab flows chapters on: most start mid-page, at their heading line"
    for c in mid:
        pos = doc.position(c.char_start)
        page_lines = reader.pages[pos["page"] - 1].extract_text().splitlines()
        assert page_lines[pos["line"] - 1].strip() == c.title


def test_pdf_without_outline_falls_back(books, tmp_path):
    doc = load(write_pdf(books["book"], tmp_path / "plain.pdf", outline=False))
    assert doc.toc is None
    chapters = find_chapters(doc)  # no blank lines around headings in a PDF's text layer: fixed sections
    assert chapters[0].char_start == doc.body_start and chapters[-1].char_end == doc.body_end


def test_html_headings_and_fallback(books, tmp_path):
    doc = load(books["html"])
    assert [t.level for t in doc.toc] == [2] * CHAPTERS  # the lone <h1> is the title
    flat = tmp_path / "flat.html"  # no headings at all: the plain-text detection on the extracted text
    flat.write_text(re.sub(r"<(/?)h[12]>", r"<\1p>", books["html"].read_text(encoding="utf-8")), encoding="utf-8")
    assert [c.title for c in find_chapters(load(flat))] == titles()


# ---------------------------------------------------------------------------------------------------------
# citations: exact spans of the extracted text, and where to look in the original


def spans_with(doc, words):
    out = []
    for w in words:
        i = doc.text.find(w, doc.body_start)
        assert i >= 0, w
        s, e = next((s, e) for s, e in sentence_windows(doc.text, 0, 300) if s <= i < e)
        out.append(cite(doc, 0, "", s, e))
    return out


def test_pdf_citations_name_page_and_line(books):
    doc = load(books["pdf"])
    reader = PdfReader(books["pdf"])
    for c in spans_with(doc, WORDS):
        assert c.quote == doc.text[c.char_start:c.char_end]
        page, line = c.position["page"], c.position["line"]
        assert c.where == f"p. {page}, line {line}"
        page_text = reader.pages[page - 1].extract_text()
        first = c.quote.split("\n")[0].strip()
        assert first in page_text.splitlines()[line - 1], (c.where, first)
        assert norm(c.quote.split("\n\n")[0]) in norm(page_text)  # the part on this page is on this page


def test_epub_citations_name_spine_item_and_offset(books):
    from lxml import etree

    path = books["epub"]
    doc = load(path)
    z = zipfile.ZipFile(path)
    for c in spans_with(doc, WORDS):
        assert c.quote == doc.text[c.char_start:c.char_end]
        item, offset = c.position["item"], c.position["offset"]
        assert c.where == f"{item}+{offset}"
        root = etree.fromstring(z.read(f"OEBPS/{item}"))
        body = root.find("{http://www.w3.org/1999/xhtml}body")
        assert norm(c.quote) in norm("".join(body.itertext()))  # the quote is in that spine item
        start = next(p.char_start for p in doc.parts if p.name == item)
        assert doc.text[start + offset:].startswith(c.quote)


def test_text_files_have_no_position(books):
    c = spans_with(load(TXT), ["Weena"])[0]
    assert c.where is None and c.position is None


def test_cli_ask_pdf_cites_pages(books, home, tiny_dir):
    pdf = books["pdf"]
    res = runner.invoke(app, ["ask", str(pdf), "What was the name of the little woman, Weena?", "-m", str(tiny_dir),
                              *SMALL, "--mode", "rag", "--max-tokens", "4", "--json"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    out = json.loads(res.stdout)
    doc = load(pdf)
    assert out["citations"]
    for c in out["citations"]:
        assert doc.text[c["char_start"]:c["char_end"]] == c["quote"]
        assert c["where"] == f"p. {c['position']['page']}, line {c['position']['line']}"
    assert any("Weena" in c["quote"] for c in out["citations"])
    res = runner.invoke(app, ["ask", str(pdf), "Who is Weena?", "-m", str(tiny_dir), *SMALL, "--mode", "rag",
                              "--max-tokens", "4"])
    assert res.exit_code == 0 and re.search(r"\[1\] .*— p\. \d+, line \d+; lines \d+-\d+, chars", res.stdout)


def test_cli_reads_and_summarizes_an_epub(home, tiny_dir, tmp_path):
    epub = write_epub(book_of(REPO / "samples" / "short.txt"), tmp_path / "alice.epub")
    res = runner.invoke(app, ["read", str(epub), "-m", str(tiny_dir), *SMALL, "--json"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    out = json.loads(res.stdout)
    assert out["status"] == "done" and out["chapters"] == 2
    res = runner.invoke(app, ["summarize", str(epub), "--level", "chapter", "-m", str(tiny_dir), *SMALL, "-q"])
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["CHAPTER I. Down the Rabbit-Hole", "CHAPTER II. The Pool of Tears"]
    # the same bytes extracted differently (another pypdf or lxml): never answered from offsets into other text
    conn = sqlite3.connect(out["index"])
    conn.execute("UPDATE document SET size_chars = size_chars + 1")
    conn.commit()
    conn.close()
    res = runner.invoke(app, ["summarize", str(epub), "--level", "chapter", "-m", str(tiny_dir), *SMALL, "-q"])
    assert res.exit_code == 2 and res.stderr.startswith("Error: ") and "--reread" in res.stderr, res.stderr
    assert runner.invoke(app, ["read", str(epub), "-m", str(tiny_dir), *SMALL, "-q", "--reread"]).exit_code == 0


# ---------------------------------------------------------------------------------------------------------
# detection by content


def test_detection_by_content(books, tmp_path):
    pdf = books["pdf"].read_bytes()
    assert sniff(pdf) == "pdf" and sniff(books["epub"].read_bytes()) == "epub"
    assert sniff(books["html"].read_bytes()) == "html" and sniff(TXT.read_bytes()) is None
    assert sniff(b"\xef\xbb\xbf<?xml version='1.0'?>\n<!-- x -->\n<html><body>x</body></html>") == "html"
    disguised = tmp_path / "book.txt"  # a PDF saved as .txt is read as the PDF it is
    disguised.write_bytes(pdf)
    doc = load(disguised)
    assert doc.kind == "pdf" and len(find_chapters(doc)) == CHAPTERS
    page = tmp_path / "page.txt"
    page.write_bytes(books["html"].read_bytes())
    assert load(page).kind == "html"
    assert load(TXT).kind == "text"


def test_font_obfuscation_is_not_drm(books, tmp_path):
    enc = ('<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
           'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:EncryptionMethod '
           'Algorithm="http://www.idpf.org/2008/embedding"/><enc:CipherData><enc:CipherReference '
           'URI="OEBPS/fonts/a.otf"/></enc:CipherData></enc:EncryptedData></encryption>')
    doc = load(write_epub(books["book"], tmp_path / "fonts.epub", extra={"META-INF/encryption.xml": enc}))
    assert len(find_chapters(doc)) == CHAPTERS


def test_partly_scanned_pdf_warns(books, tmp_path):
    w = PdfWriter()
    w.append(PdfReader(books["pdf"]), pages=(0, 2))
    for _ in range(3):
        w.add_blank_page(width=420, height=595)
    p = tmp_path / "partly.pdf"
    w.write(p)
    doc = load(p)
    assert len(doc.warnings) == 1 and "3 of 5 pages have no text layer" in doc.warnings[0]


# ---------------------------------------------------------------------------------------------------------
# bad input: one `Error:` line that says what to do, exit 2, no traceback, no index


def drm_epub(books, d, extra):
    return write_epub(books["book"], d / "drm.epub", extra=extra)


AES_ENC = ('<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
           'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:EncryptionMethod '
           'Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/><enc:CipherData><enc:CipherReference '
           'URI="OEBPS/chapter01.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>')


def encrypted_pdf(books, d):
    w = PdfWriter()
    w.append(PdfReader(books["pdf"]))
    w.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    p = d / "locked.pdf"
    w.write(p)
    return p


def scanned_pdf(books, d):
    from PIL import Image, ImageDraw
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    img = Image.new("L", (400, 120), 255)
    ImageDraw.Draw(img).text((10, 50), "The Time Traveller (for so it will be convenient", fill=0)
    p = d / "scan.pdf"
    c = canvas.Canvas(str(p))
    for _ in range(2):
        c.drawImage(ImageReader(img), 50, 500, width=400, height=120)
        c.showPage()
    c.save()
    return p


def corrupt_zip(books, d):
    p = d / "broken.epub"
    raw = books["epub"].read_bytes()
    p.write_bytes(raw[: len(raw) // 2])  # cut off mid-download: no central directory
    return p


def corrupt_member(books, d):
    p = d / "garbled.epub"
    raw = bytearray(books["epub"].read_bytes())
    i = raw.index(b"OEBPS/chapter01.xhtml") + 60
    raw[i:i + 400] = bytes(400)
    p.write_bytes(bytes(raw))
    return p


def write(d, name, data):
    p = d / name
    p.write_bytes(data)
    return p


def plain_zip(d, name):
    p = d / name
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("book.txt", "Some words.\n" * 50)
    return p


BAD = {
    "drm-encryption-xml": (lambda b, d: drm_epub(b, d, {"META-INF/encryption.xml": AES_ENC}),
                           r'"drm\.epub" is DRM-protected \(META-INF/encryption\.xml encrypts OEBPS/chapter01\.xhtml\)'
                           r" — docstream reads only DRM-free EPUBs; export a DRM-free copy"),
    "drm-adobe-rights": (lambda b, d: drm_epub(b, d, {"META-INF/rights.xml": "<rights/>"}),
                         r'"drm\.epub" is DRM-protected \(Adobe DRM, META-INF/rights\.xml\)'),
    "encrypted-pdf": (encrypted_pdf, r'"locked\.pdf" is password-protected — .*save a copy without the password'),
    "scanned-pdf": (scanned_pdf, r'"scan\.pdf" has no text layer \(2 scanned pages\) — run OCR first, e\.g\. '
                                 r'`ocrmypdf "scan\.pdf" ocr\.pdf`'),
    "damaged-pdf": (lambda b, d: write(d, "bad.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 20),
                    r'"bad\.pdf" is not a readable PDF \(damaged: .*\) — re-download it'),
    "corrupt-zip": (corrupt_zip, r'"broken\.epub" is a damaged EPUB \(not a readable zip archive: .*\) — '
                                 r"re-download it"),
    "corrupt-member": (corrupt_member, r'"garbled\.epub" is a damaged EPUB \(OEBPS/chapter01\.xhtml: .*\) — '
                                      r"re-download it"),
    "zip-named-epub": (lambda b, d: plain_zip(d, "notes.epub"),
                       r'"notes\.epub" is a zip archive but not an EPUB \(no META-INF/container\.xml\) — export'),
    "plain-zip": (lambda b, d: plain_zip(d, "notes.zip"), r'"notes\.zip" looks binary \(NUL bytes\) — .*convert it'),
    "png": (lambda b, d: write(d, "cover.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
            r'"cover\.png" looks binary'),
    "empty-html": (lambda b, d: write(d, "empty.html", b"<!DOCTYPE html><html><head><title>x</title></head>"
                                                       b"<body><img src='a.png'></body></html>"),
                   r'"empty\.html" holds no text — there is nothing to read'),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_through_the_cli(case, books, home, tiny_dir, tmp_path):
    make, message = BAD[case]
    path = make(books, tmp_path)
    res = runner.invoke(app, ["read", str(path), "-m", str(tiny_dir), *SMALL, "--json"])
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    assert "Traceback" not in res.output and res.stdout == ""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (home / "index").exists() or not list((home / "index").glob("*.db"))
