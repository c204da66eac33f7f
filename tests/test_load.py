"""Loader: encodings, BOMs, line endings, Gutenberg markers, titles, line numbers and every refusal."""
from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

import pytest

from docstream.errors import InputError
from docstream.text.load import LOADERS, Document, load

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

GUTENBERG = (
    "The Project Gutenberg EBook of Tiny Book, by Someone\r\n"
    "\r\n"
    "Title: Tiny Book\r\n"
    "\r\n"
    "Author: Someone\r\n"
    "\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK TINY BOOK ***\r\n"
    "\r\n"
    "Once upon a time.\r\n"
    "The end.\r\n"
    "\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK TINY BOOK ***\r\n"
    "\r\n"
    "Licence text.\r\n"
)


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


# ---------------------------------------------------------------------------------------------------------
# encodings


def test_utf8_plain(tmp_path):
    p = write(tmp_path, "a.txt", "héllo wörld — “quoted”\n")
    d = load(p)
    assert isinstance(d, Document)
    assert d.text == "héllo wörld — “quoted”\n"
    assert d.encoding == "utf-8" and d.warnings == []
    assert d.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert (d.body_start, d.body_end) == (0, len(d.text))
    assert d.title == "a"


def test_utf8_bom_is_stripped(tmp_path):
    p = write(tmp_path, "bom.txt", codecs.BOM_UTF8 + "Alpha\r\nBeta\r\n".encode())
    d = load(p)
    assert d.encoding == "utf-8-sig"
    assert d.text == "Alpha\r\nBeta\r\n"  # offsets are into the decoded text, without the BOM
    assert d.quote(7, 11) == "Beta"
    assert d.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()  # of the raw bytes, BOM included


@pytest.mark.parametrize("codec,bom,name", [("utf-16-le", codecs.BOM_UTF16_LE, "utf-16-le"),
                                             ("utf-16-be", codecs.BOM_UTF16_BE, "utf-16-be"),
                                             ("utf-32-le", codecs.BOM_UTF32_LE, "utf-32-le")])
def test_utf16_32_with_bom(tmp_path, codec, bom, name):
    text = "First line\r\nSecond — line ✓\n"
    d = load(write(tmp_path, "w.txt", bom + text.encode(codec)))
    assert d.encoding == name and d.text == text and d.warnings == []


def test_cp1252_fallback_warns(tmp_path):
    d = load(write(tmp_path, "win.txt", "Smart “quotes” and café\r\n".encode("cp1252")))
    assert d.encoding == "cp1252"
    assert d.text == "Smart “quotes” and café\r\n"
    assert len(d.warnings) == 1 and "not valid UTF-8" in d.warnings[0] and "\n" not in d.warnings[0]


def test_latin1_fallback_when_cp1252_fails(tmp_path):
    raw = b"caf\xe9 \x81 undefined in cp1252\n"
    d = load(write(tmp_path, "old.txt", raw))
    assert d.encoding == "latin-1" and d.text == raw.decode("latin-1") and d.warnings


# ---------------------------------------------------------------------------------------------------------
# line endings and line numbers


@pytest.mark.parametrize("nl", ["\n", "\r\n"])
def test_line_endings_kept_and_lines_numbered(tmp_path, nl):
    text = nl.join(["one", "two", "", "four"]) + nl
    d = load(write(tmp_path, "n.txt", text))
    assert d.text == text
    assert d.n_lines == 5  # four lines + the empty position after the last newline
    assert d.line_of(0) == 1 and d.line_of(2) == 1
    assert d.line_of(text.index("two")) == 2
    assert d.line_of(text.index("two") + 3) == 2  # the '\r' / '\n' belongs to its line
    assert d.line_of(text.index("four")) == 4
    assert d.line_of(len(text)) == 5


def test_mixed_line_endings(tmp_path):
    text = "a\r\nb\nc\r\nd"
    d = load(write(tmp_path, "m.txt", text))
    assert d.text == text
    assert [d.line_of(text.index(c)) for c in "abcd"] == [1, 2, 3, 4]
    assert list(d.line_starts) == [0, 3, 5, 8]


def test_no_newline_at_all(tmp_path):
    text = "word " * 200_000  # 1 MB on a single line
    d = load(write(tmp_path, "one.txt", text))
    assert d.n_lines == 1 and d.line_of(len(text) - 1) == 1 and d.line_of(len(text)) == 1


def test_quote_is_exact_slice(tmp_path):
    d = load(write(tmp_path, "q.txt", "abc\r\ndef"))
    assert d.quote(2, 6) == "c\r\nd"
    with pytest.raises(AssertionError):
        d.quote(3, 100)


# ---------------------------------------------------------------------------------------------------------
# Gutenberg markers and titles


def test_gutenberg_markers_give_body_offsets_into_original(tmp_path):
    p = write(tmp_path, "g.txt", codecs.BOM_UTF8 + GUTENBERG.encode())
    d = load(p)
    assert d.text == GUTENBERG  # header and licence stay in text
    start_line = "*** START OF THIS PROJECT GUTENBERG EBOOK TINY BOOK ***\r\n"
    assert d.body_start == GUTENBERG.index(start_line) + len(start_line)
    assert d.body_end == GUTENBERG.index("*** END OF")
    assert d.body.strip() == "Once upon a time.\r\nThe end."
    assert d.title == "Tiny Book"
    assert d.line_of(d.body_start) == 8


@pytest.mark.parametrize("start,end", [
    ("*** START OF THE PROJECT GUTENBERG EBOOK X ***", "*** END OF THE PROJECT GUTENBERG EBOOK X ***"),
    ("***START OF THE PROJECT GUTENBERG EBOOK X***", "***END OF THE PROJECT GUTENBERG EBOOK X***"),
    ("*** START OF PROJECT GUTENBERG EBOOK X ***", "*** END OF PROJECT GUTENBERG EBOOK X ***"),
])
def test_gutenberg_marker_variants(tmp_path, start, end):
    text = f"header\n{start}\nBODY\n{end}\nfooter\n"
    d = load(write(tmp_path, "v.txt", text))
    assert d.body == "BODY\n"


def test_gutenberg_start_without_end_reads_to_end(tmp_path):
    d = load(write(tmp_path, "s.txt", "head\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nbody\n"))
    assert d.body == "body\n" and d.warnings and "no END line" in d.warnings[0]


def test_transcriber_credits_above_a_headerless_text_are_not_read(tmp_path):
    text = ("Produced by Greg Weeks, Mary Meehan and the Online\r\nDistributed Proofreading Team at "
            "http://www.pgdp.net\r\n\r\nDoorway to Kal-Jmar\r\nBy Stuart Fleming\r\nThe tall man loitered.\r\n")
    d = load(write(tmp_path, "k.txt", text))
    assert d.body.startswith("Doorway to Kal-Jmar") and d.text == text  # offsets still index the file
    assert load(write(tmp_path, "only.txt", "Produced by Nobody\n")).body == "Produced by Nobody\n"  # all credit: keep
    mid = "Story.\nProduced by the Royal Theatre in 1901.\n"
    assert load(write(tmp_path, "mid.txt", mid)).body == mid  # only the lines the file opens with


def test_markdown_title_and_stem_fallback(tmp_path):
    assert load(write(tmp_path, "notes.md", "intro\n\n# The Real Title\n\ntext\n")).title == "The Real Title"
    assert load(write(tmp_path, "plain.txt", "just text\n")).title == "plain"


def test_format_table_and_unknown_suffix(tmp_path):
    assert {".txt", ".md"} <= set(LOADERS)
    d = load(write(tmp_path, "README.rst", "Some text\n=========\n"))
    assert d.text.startswith("Some text")
    with pytest.raises(InputError, match="not UTF-8 text.*docstream reads .txt, .md, .epub, .html and .pdf"):
        load(write(tmp_path, "doc.docx", b"Some \xe2\xe3\xcf\xd3 stream"))
    with pytest.raises(InputError, match='"doc.pdf" is not a readable PDF'):  # detected by content: a PDF
        load(write(tmp_path, "doc.pdf", b"%PDF-1.4 \xe2\xe3\xcf\xd3 stream"))


# ---------------------------------------------------------------------------------------------------------
# refusals


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"^No such file: .*nope\.txt — check the path$"):
        load(tmp_path / "nope.txt")


def test_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory — pass one .txt or .md file"):
        load(tmp_path)


def test_unreadable(tmp_path, monkeypatch):
    p = write(tmp_path, "locked.txt", "secret\n")

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)  # chmod 000 does not stop root
    with pytest.raises(InputError, match="permission denied.*check the file's permissions"):
        load(p)


def test_empty(tmp_path):
    with pytest.raises(InputError, match="is empty — there is nothing to read"):
        load(write(tmp_path, "e.txt", b""))


def test_only_whitespace(tmp_path):
    with pytest.raises(InputError, match="holds only whitespace"):
        load(write(tmp_path, "w.txt", " \r\n\t\n  \n"))
    with pytest.raises(InputError, match="holds only whitespace"):
        load(write(tmp_path, "w16.txt", codecs.BOM_UTF16_LE + "  \n".encode("utf-16-le")))


@pytest.mark.parametrize("name,raw", [
    ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00"),
    ("book.txt", b"PK\x03\x04\x14\x00\x00\x00\x08\x00"),  # a zip renamed .txt
    ("utf16-without-bom.txt", "hello".encode("utf-16-le")),
])
def test_binary_nul_bytes(tmp_path, name, raw):
    with pytest.raises(InputError, match=rf'^"{name}" looks binary \(NUL bytes\) — docstream reads .txt, .md, .epub'):
        load(write(tmp_path, name, raw))


def test_binary_control_bytes(tmp_path):
    raw = bytes(range(1, 32)) * 50 + b"some text" * 10
    with pytest.raises(InputError, match="looks binary .*control bytes"):
        load(write(tmp_path, "ctl.txt", raw))


def test_error_messages_are_one_line(tmp_path):
    for target in (tmp_path / "missing.txt", tmp_path, write(tmp_path, "e.txt", b""),
                   write(tmp_path, "b.txt", b"\x00\x01")):
        with pytest.raises(InputError) as e:
            load(target)
        assert "\n" not in str(e.value) and " — " in str(e.value)


# ---------------------------------------------------------------------------------------------------------
# shipped samples


def test_sample_time_machine_is_the_gutenberg_file():
    d = load(SAMPLES / "time-machine.txt")
    assert d.encoding == "utf-8" and "\r\n" in d.text and d.title == "The Time Machine"
    assert d.body.lstrip().startswith("The Time Machine")
    assert d.text[d.body_end:].startswith("*** END OF THIS PROJECT GUTENBERG EBOOK THE TIME MACHINE ***")


def test_sample_short():
    p = SAMPLES / "short.txt"
    assert p.stat().st_size < 25_000
    d = load(p)
    assert d.text.startswith("Excerpt:") and "CHAPTER I. Down the Rabbit-Hole" in d.text
