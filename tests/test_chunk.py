"""Chunker: chapter detection (each heading style, TOC skipped, fallbacks) and exact, token-bounded chunks."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from docstream.errors import ModelNotFound, SettingsError
from docstream.text.chapters import FRONT_MATTER, Chapter, find_chapters
from docstream.text.chunk import Chunk, chunk_document
from docstream.text.load import Document, load

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "gutenberg"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from docstream.backend.model import resolve

    try:
        return AutoTokenizer.from_pretrained(resolve())
    except ModelNotFound as e:
        pytest.skip(str(e))


def doc_of(tmp_path: Path, text: str, name: str = "t.txt") -> Document:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return load(p)


def para(words: int = 60, seed: str = "word") -> str:
    return " ".join(f"{seed}{i}" for i in range(words)) + "."


def titles(chapters: list[Chapter]) -> list[str]:
    return [c.title for c in chapters if c.title != FRONT_MATTER]


def check_chunks(doc: Document, chapters: list[Chapter], chunks: list[Chunk], limit: int, tok=None) -> None:
    """The chunking contract: exact offsets, in order, no overlap, inside chapters, ≤ limit, body covered."""
    assert chapters[0].char_start == doc.body_start and chapters[-1].char_end == doc.body_end
    for a, b in zip(chapters, chapters[1:]):
        assert a.char_end == b.char_start
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    by_index = {c.index: c for c in chapters}
    prev_end = doc.body_start
    for c in chunks:
        assert doc.text[c.char_start:c.char_end] == c.text and c.text.strip() == c.text and c.text
        assert c.char_start >= prev_end and not doc.text[prev_end:c.char_start].strip()  # only space between
        ch = by_index[c.chapter]
        assert ch.title == c.chapter_title and ch.char_start <= c.char_start < c.char_end <= ch.char_end
        assert 0 < c.tokens <= limit
        assert c.line_start == doc.line_of(c.char_start) and c.line_end == doc.line_of(c.char_end - 1)
        assert c.line_start <= c.line_end
        prev_end = c.char_end
    assert not doc.text[prev_end:doc.body_end].strip()
    if tok is not None:
        for c in chunks[:: max(1, len(chunks) // 20)]:
            assert c.tokens == len(tok.encode(c.text, add_special_tokens=False))


# ---------------------------------------------------------------------------------------------------------
# chapter detection on small synthetic texts


def test_chapter_headings_and_toc_skipped(tmp_path):
    toc = "CONTENTS\n\nCHAPTER I. The Start\n\nCHAPTER II. The Middle\n\nCHAPTER III. The End\n\n\n"
    body = "".join(f"CHAPTER {n}. The {t}\n\n{para()}\n\n{para()}\n\n"
                   for n, t in (("I", "Start"), ("II", "Middle"), ("III", "End")))
    text = "A BOOK\n\nby Someone\n\n" + toc + body
    d = doc_of(tmp_path, text)
    chapters = find_chapters(d)
    assert titles(chapters) == ["CHAPTER I. The Start", "CHAPTER II. The Middle", "CHAPTER III. The End"]
    assert len(chapters) == 3  # the short title page + TOC is merged into chapter I, not a chapter
    assert chapters[0].char_start == 0 and chapters[1].char_start == text.index("CHAPTER II. The Middle\n\nword0")


@pytest.mark.parametrize("fmt", ["Chapter {n}", "CHAPTER {r}.", "Letter {n}", "ADVENTURE {r}. A SCANDAL {n}",
                                 "{r}. A SCANDAL IN BOHEMIA {n}", "{r}.", "{r}", "Chapter {r}: Some Title"])
def test_each_heading_style(tmp_path, fmt):
    romans = ["I", "II", "III", "IV"]
    heads = [fmt.format(n=i + 1, r=romans[i]) for i in range(4)]
    text = "".join(f"{h}\n\n{para()}\n\n" for h in heads)
    assert titles(find_chapters(doc_of(tmp_path, text))) == heads


def test_headings_need_blank_lines_around(tmp_path):
    text = f"{para()}\nCHAPTER I.\n{para()}\n\n{para()}\n"
    chapters = find_chapters(doc_of(tmp_path, text))
    assert [c.title for c in chapters] == ["Section 1"]


def test_repeated_titles_take_the_one_followed_by_text(tmp_path):
    text = ("Letter 1\n\nLetter 2\n\nChapter 1\n\n\n"
            f"Letter 1\n\n{para()}\n\nLetter 2\n\n{para()}\n\nChapter 1\n\n{para()}\n")
    chapters = find_chapters(doc_of(tmp_path, text))
    assert titles(chapters) == ["Letter 1", "Letter 2", "Chapter 1"]
    assert chapters[1].char_start == text.rindex("Letter 2")


def test_numeral_with_subtitle_line_and_epilogue(tmp_path):
    toc = "CONTENTS\n\n\n I Introduction\n II The Machine\n Epilogue\n\n\n"
    body = f" I\n\n\n Introduction\n\n{para()}\n\n\n II\n\n\n The Machine\n\n{para()}\n\n\n Epilogue\n\n{para()}\n"
    assert titles(find_chapters(doc_of(tmp_path, toc + body))) == ["I. Introduction", "II. The Machine", "Epilogue"]


def test_bare_numerals_are_subsections_under_adventures(tmp_path):
    text = (f"ADVENTURE I. A SCANDAL\n\nI.\n\n{para()}\n\nII.\n\n{para()}\n\n"
            f"ADVENTURE II. THE LEAGUE\n\n{para()}\n\nIII. THE ADVENTURE OF THE BLUE CARBUNCLE\n\n{para()}\n")
    assert titles(find_chapters(doc_of(tmp_path, text))) == [
        "ADVENTURE I. A SCANDAL", "ADVENTURE II. THE LEAGUE", "III. THE ADVENTURE OF THE BLUE CARBUNCLE"]


def test_parts_prefix_chapter_titles(tmp_path):
    text = (f"PART I.\n\n(a note)\n\nCHAPTER I. ONE\n\n{para()}\n\nCHAPTER II. TWO\n\n{para()}\n\n"
            f"PART II. _The Second_\n\nCHAPTER I. THREE\n\n{para()}\n")
    chapters = find_chapters(doc_of(tmp_path, text))
    assert titles(chapters) == ["PART I. — CHAPTER I. ONE", "PART I. — CHAPTER II. TWO",
                                "PART II. The Second — CHAPTER I. THREE"]
    assert chapters[2].char_start == text.index("PART II.")  # the part heading opens its first chapter


def test_front_matter_kept_when_substantial(tmp_path):
    text = "SOME OPENING WORDS\n\n" + "\n\n".join(para() for _ in range(5)) + "\n\n" + \
        "".join(f"Chapter {i}\n\n{para()}\n\n" for i in (1, 2))
    chapters = find_chapters(doc_of(tmp_path, text))
    assert [c.title for c in chapters] == [FRONT_MATTER, "Chapter 1", "Chapter 2"]


def test_markdown_headings(tmp_path):
    text = ("# My Notes\n\nIntro text.\n\n## First\n\nSome text.\n\n### Detail\n\nMore.\n\n"
            "```\n## not a heading\n```\n\n## Second\n\nThe end.\n")
    chapters = find_chapters(doc_of(tmp_path, text, "notes.md"))
    assert [c.title for c in chapters] == ["My Notes", "First", "Second"]  # the lone # has text of its own
    assert chapters[2].char_start == text.index("## Second")


def test_no_headings_gives_fixed_sections(tmp_path):
    text = "\n\n".join(para(40, f"w{i}_") for i in range(300))  # ~120 KB, no headings
    d = doc_of(tmp_path, text)
    chapters = find_chapters(d)
    assert [c.title for c in chapters] == [f"Section {i + 1}" for i in range(len(chapters))]
    assert 3 <= len(chapters) <= 8
    for c in chapters[:-1]:
        assert text[c.char_end - 2:c.char_end] == "\n\n"  # cut at paragraph boundaries


def test_gutenberg_body_only(tmp_path):
    text = ("Title: X\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n"
            f"Chapter 1\n\n{para()}\n\nChapter 2\n\n{para()}\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n"
            "Chapter 3\n\nlicence\n")
    d = doc_of(tmp_path, text)
    chapters = find_chapters(d)
    assert titles(chapters) == ["Chapter 1", "Chapter 2"] and chapters[-1].char_end == d.body_end


# ---------------------------------------------------------------------------------------------------------
# chunking


def test_chunks_exact_and_bounded(tmp_path, tok):
    text = "".join(f"Chapter {i}\r\n\r\n" + "\r\n\r\n".join(para(30 + 7 * j, f"c{i}p{j}x") for j in range(12))
                   + "\r\n\r\n" for i in (1, 2, 3))
    d = doc_of(tmp_path, text)
    chapters, chunks = chunk_document(d, tok, chunk_tokens=128)
    assert len(chapters) == 3 and len(chunks) > 6
    check_chunks(d, chapters, chunks, 128, tok)
    assert {c.chapter for c in chunks} == {0, 1, 2}


def test_long_paragraph_splits_at_sentences(tmp_path, tok):
    sentences = [f"Sentence number {i} says something rather ordinary about item {i}." for i in range(200)]
    d = doc_of(tmp_path, " ".join(sentences))
    chapters, chunks = chunk_document(d, tok, chunk_tokens=64)
    check_chunks(d, chapters, chunks, 64, tok)
    assert all(c.text.endswith(".") for c in chunks)  # sentence boundaries preferred over words


def test_single_line_no_newline(tmp_path, tok):
    d = doc_of(tmp_path, " ".join(para(50, f"s{i}_") for i in range(2000)))  # ~500 KB on one line
    t = time.time()
    chapters, chunks = chunk_document(d, tok, chunk_tokens=512)
    assert time.time() - t < 15
    assert len(chapters) > 1 and all(c.title.startswith("Section ") for c in chapters)
    check_chunks(d, chapters, chunks, 512, tok)


def test_no_whitespace_at_all(tmp_path, tok):
    d = doc_of(tmp_path, "abcdefghij" * 3000)
    chapters, chunks = chunk_document(d, tok, chunk_tokens=100)
    check_chunks(d, chapters, chunks, 100, tok)


def test_cjk_text(tmp_path, tok):
    d = doc_of(tmp_path, "这是一个很长的句子，讲述了一些事情。" * 400)
    chapters, chunks = chunk_document(d, tok, chunk_tokens=64)
    check_chunks(d, chapters, chunks, 64, tok)


def test_chunk_size_too_small(tmp_path, tok):
    with pytest.raises(SettingsError, match="too small"):
        chunk_document(doc_of(tmp_path, "some text"), tok, chunk_tokens=4)


def test_sample_time_machine(tok):
    d = load(REPO / "samples" / "time-machine.txt")
    t = time.time()
    chapters, chunks = chunk_document(d, tok, chunk_tokens=512)
    assert time.time() - t < 10
    assert len(chapters) == 17
    assert chapters[0].title == "I. Introduction" and chapters[15].title == "XVI. After the Story"
    assert chapters[-1].title == "Epilogue"
    check_chunks(d, chapters, chunks, 512, tok)
    assert chunks[0].line_start >= 22 and chunks[-1].line_end < 3215


def test_sample_short(tok):
    d = load(REPO / "samples" / "short.txt")
    chapters, chunks = chunk_document(d, tok, chunk_tokens=256)
    assert [c.title for c in chapters] == ["CHAPTER I. Down the Rabbit-Hole", "CHAPTER II. The Pool of Tears"]
    check_chunks(d, chapters, chunks, 256, tok)


# ---------------------------------------------------------------------------------------------------------
# the evaluation corpus (only where /work/shared sits beside the repo)

EXPECTED = {
    "pg11-alice.txt": (12, "CHAPTER I. Down the Rabbit-Hole", "CHAPTER XII. Alice’s Evidence"),
    "pg35-time-machine.txt": (17, "I. Introduction", "Epilogue"),
    "pg84-frankenstein.txt": (28, "Letter 1", "Chapter 24"),
    "pg1342-pride-and-prejudice.txt": (61, "Chapter 1", "Chapter 61"),
    "pg1661-sherlock-holmes.txt": (12, "ADVENTURE I. A SCANDAL IN BOHEMIA",
                                   "XII. THE ADVENTURE OF THE COPPER BEECHES"),
    "pg244-study-in-scarlet.txt": (14, "PART I. — CHAPTER I. MR. SHERLOCK HOLMES.",
                                   "PART II. The Country of the Saints. — CHAPTER VII. THE CONCLUSION."),
}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="no evaluation corpus beside the repo")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gutenberg_chapter_counts(name):
    n, first, last = EXPECTED[name]
    got = titles(find_chapters(load(CORPUS / name)))
    assert (len(got), got[0], got[-1]) == (n, first, last), got


@pytest.mark.skipif(not CORPUS.is_dir(), reason="no evaluation corpus beside the repo")
def test_gutenberg_novel_chunks_fast(tok):
    d = load(CORPUS / "pg1661-sherlock-holmes.txt")  # ~600 KB
    t = time.time()
    chapters, chunks = chunk_document(d, tok, chunk_tokens=512)
    assert time.time() - t < 10
    check_chunks(d, chapters, chunks, 512)
