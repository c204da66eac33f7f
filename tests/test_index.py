"""The SQLite index: migrations, refusal of bad files, FTS triggers, the tag index, locking, concurrency."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest
import sqlite_utils

from docstream.errors import IndexFileError
from docstream.index import SCHEMA_VERSION, Index, Tag, default_path, fts_query, normalize_tag, settings_hash
from docstream.index.db import APPLICATION_ID


@dataclass
class FakeChapter:
    index: int
    title: str
    char_start: int
    char_end: int


@dataclass
class FakeChunk:
    ordinal: int
    chapter: int
    chapter_title: str
    char_start: int
    char_end: int
    line_start: int
    line_end: int
    tokens: int
    text: str


TEXTS = [
    "Victor Frankenstein studied natural philosophy at Ingolstadt.",
    "The creature opened its dull yellow eye on a dreary night of November.",
    "Elizabeth wrote a long letter from Geneva about little William.",
    "Justine was accused of the murder and tried before the court.",
    "On the glacier of Montanvert the daemon asked for a companion.",
    "Walton's ship was trapped in the ice far to the north.",
]


def make_chunks(texts=TEXTS, per_chapter=2):
    chunks, pos = [], 0
    for i, t in enumerate(texts):
        ch = i // per_chapter
        chunks.append(FakeChunk(i, ch, f"Chapter {ch + 1}", pos, pos + len(t), i * 3, i * 3 + 2, len(t.split()), t))
        pos += len(t) + 2
    return chunks


@pytest.fixture
def ix(tmp_path):
    index = Index.open(tmp_path / "doc.db")
    index.set_document(sha256="a" * 64, path="book.txt", title="Frankenstein", model="smollm2-135m",
                       settings={"chunk_tokens": 512}, settings_hash="b" * 64, chunks_total=len(TEXTS))
    index.add_chunks(make_chunks())
    yield index
    index.close()


# ---------------------------------------------------------------- opening, migrations, bad files

def test_migrations_set_user_version_and_wal(tmp_path):
    with Index.open(tmp_path / "x.db") as ix:
        assert ix.schema_version == SCHEMA_VERSION >= 1
        assert ix.db.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert ix.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ix.db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert ix.db.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
        names = set(ix.db.table_names())
        assert {"document", "chapters", "chunks", "notes", "tags", "chunk_tags", "summaries", "chunks_fts",
                "tags_fts"} <= names
        assert ix.integrity() == "ok"


def test_a_new_migration_upgrades_an_old_file(tmp_path, monkeypatch):
    from docstream.index import db as dbmod

    p = tmp_path / "old.db"
    with Index.open(p) as ix:
        ix.add_chunks(make_chunks())
        ix.add_note(0, "kept", ["victor"])

    def m099_note_confidence(db):
        db.execute("ALTER TABLE notes ADD COLUMN confidence REAL")

    monkeypatch.setattr(dbmod, "MIGRATIONS", [*dbmod.MIGRATIONS, m099_note_confidence])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", len(dbmod.MIGRATIONS))
    with Index.open(p) as ix:
        assert ix.schema_version == SCHEMA_VERSION + 1
        assert "confidence" in ix.db["notes"].columns_dict
        assert ix.notes()[0].gist == "kept" and [h.chunk for h in ix.search("victor")] == [0]
        assert [name for name, _ in ix.migrations()][-1] == "m099_note_confidence"
    with Index.open(p) as ix:  # applied once only
        assert ix.schema_version == SCHEMA_VERSION + 1


def test_migrations_are_recorded_by_name_also_in_a_file_from_before_the_record(tmp_path):
    from docstream.index.schema import m001_initial

    with Index.open(tmp_path / "new.db") as ix:
        assert [name for name, _ in ix.migrations()] == ["m001_initial", "m002_migrations_table", "m003_summary_method",
                                                     "m004_windows", "m005_words"]
    old = tmp_path / "v1.db"  # as docstream 0.1 left it: the initial schema, user_version 1, no record
    conn = sqlite3.connect(old)
    m001_initial(sqlite_utils.Database(conn))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with Index.open(old) as ix:
        assert ix.schema_version == SCHEMA_VERSION
        assert [name for name, _ in ix.migrations()] == ["m001_initial", "m002_migrations_table", "m003_summary_method",
                                                     "m004_windows", "m005_words"]


def test_an_index_from_before_the_method_column_migrates_and_its_rows_say_model(tmp_path):
    from docstream.index.schema import m001_initial, m002_migrations_table

    old = tmp_path / "v2.db"  # as reader version 8 left it: schema 2, summaries and notes without `method`
    conn = sqlite3.connect(old)
    db = sqlite_utils.Database(conn)
    m001_initial(db)
    m002_migrations_table(db)
    conn.execute("INSERT INTO chunks (ordinal, chapter, char_start, char_end, text) VALUES (0, 0, 0, 5, 'Hello')")
    conn.execute("INSERT INTO notes (chunk, gist, created) VALUES (0, 'Victor studies.', 'then')")
    conn.execute("INSERT INTO summaries (level, chapter, chunk_start, chunk_end, text, created) "
                 "VALUES ('chapter', 0, 0, 0, 'Victor studies.', 'then')")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Index.open(old) as ix:
        assert ix.schema_version == SCHEMA_VERSION == 5
        assert ix.word_count() == 0 and ix.words() == ([], [])  # m005: words come with the next read or question
        assert [s.method for s in ix.summaries("chapter")] == ["model"]
        assert [n.method for n in ix.notes()] == ["model"]
        ix.add_summary("chapter", "Victor leaves.", 0, 0, chapter=0, method="extractive")
        ix.add_note(0, "Victor leaves.", [], method="extractive")
        assert [(s.text, s.method) for s in ix.summaries("chapter")] == [("Victor leaves.", "extractive")]
        assert [(n.gist, n.method) for n in ix.notes()] == [("Victor leaves.", "extractive")]


def test_memory_index_works():
    with Index.open(":memory:") as ix:
        ix.add_chunks(make_chunks())
        ix.add_note(0, "Victor studies.", {"model": ["Ingolstadt"]})
        assert [h.chunk for h in ix.search("ingolstadt")] == [0]


def test_reopen_is_idempotent(ix, tmp_path):
    ix.add_note(0, "Victor studies at university.", {"model": ["Victor", "Ingolstadt"]})
    before = ix.counts()
    ix.close()
    for _ in range(2):
        with Index.open(tmp_path / "doc.db") as again:
            assert again.schema_version == SCHEMA_VERSION
            assert again.counts() == before
            assert again.document().title == "Frankenstein"
            assert [h.chunk for h in again.search("ingolstadt")] == [0]


def test_newer_schema_is_refused(tmp_path):
    p = tmp_path / "new.db"
    Index.open(p).close()
    conn = sqlite3.connect(p)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(IndexFileError, match="newer docstream.*upgrade or use --reread") as e:
        Index.open(p)
    assert e.value.exit_code == 2
    assert "\n" not in str(e.value)


def test_random_bytes_are_refused(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(os.urandom(8192))
    with pytest.raises(IndexFileError, match="corrupt — delete it or run with --reread"):
        Index.open(p)


def test_damaged_pages_are_refused(tmp_path):
    p = tmp_path / "damaged.db"
    with Index.open(p) as ix:
        ix.add_chunks(make_chunks(TEXTS * 200, per_chapter=50))
        ix.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(p.read_bytes())
    page = 4096
    assert len(data) > 10 * page
    for off in range(2 * page, len(data) - page, 3 * page):  # keep the header, trash many b-tree pages
        data[off:off + 64] = os.urandom(64)
    p.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="corrupt"):
        Index.open(p)


def test_foreign_database_is_refused(tmp_path):
    p = tmp_path / "other.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(IndexFileError, match="not a docstream index"):
        Index.open(p)


def test_missing_file_without_create(tmp_path):
    with pytest.raises(IndexFileError, match="no index at"):
        Index.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_default_path_and_settings_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCSTREAM_HOME", str(tmp_path))
    h1 = settings_hash("smollm2-135m", {"chunk_tokens": 512, "window": 2048})
    assert h1 == settings_hash("smollm2-135m", {"window": 2048, "chunk_tokens": 512})  # key order irrelevant
    assert h1 != settings_hash("smollm2-135m", {"chunk_tokens": 256, "window": 2048})
    assert h1 != settings_hash("other-model", {"chunk_tokens": 512, "window": 2048})
    p = default_path("c" * 64, h1)
    assert p == tmp_path / "index" / f"{'c' * 16}-{h1[:8]}.db"
    assert p.parent.is_dir()


# ---------------------------------------------------------------- document, chapters, chunks

def test_document_row(ix):
    doc = ix.document()
    assert doc.sha256 == "a" * 64 and doc.settings == {"chunk_tokens": 512} and doc.status == "reading"
    ix.set_status("done")
    assert ix.document().status == "done"
    with pytest.raises(ValueError):
        ix.set_status("finished")
    with pytest.raises(TypeError, match="unknown document fields: colour"):
        ix.set_document(colour="red")


def test_chunks_and_chapters(ix):
    assert [c.ordinal for c in ix.chunks()] == list(range(len(TEXTS)))
    c = ix.chunk(3)
    assert c.text == TEXTS[3] and c.chapter == 1 and c.chapter_title == "Chapter 2" and c.tokens
    assert ix.chunk(99) is None
    chs = ix.chapters()  # created from the chunks' chapter_title, spans from the chunks
    assert [(ch.index, ch.title) for ch in chs] == [(0, "Chapter 1"), (1, "Chapter 2"), (2, "Chapter 3")]
    assert chs[1].line_start == 6 and chs[1].line_end == 11
    ix.add_chapters([FakeChapter(1, "II. Geneva", 100, 200)])
    assert ix.chapters()[1].title == "II. Geneva" and ix.chapters()[1].line_start == 6
    ix.add_chunks(make_chunks())  # idempotent
    assert ix.counts()["chunks"] == len(TEXTS)
    assert [c.ordinal for c in ix.chunks([4, 1, 4])] == [1, 4]


def test_chunks_accept_dicts():
    with Index.open(":memory:") as ix:
        ix.add_chapters([{"index": 0, "title": "One", "char_start": 0, "char_end": 10}])
        ix.add_chunks([{"ordinal": 0, "chapter": 0, "chapter_title": "One", "char_start": 0, "char_end": 10,
                        "line_start": 1, "line_end": 2, "tokens": None, "text": "hello world"}])
        assert ix.chunk(0).chapter_title == "One" and ix.chunk(0).tokens is None


# ---------------------------------------------------------------- notes and the tag index

def test_add_note_is_idempotent(ix):
    tags = {"model": ["Victor Frankenstein", "Ingolstadt", "the University"], "name": ["Victor Frankenstein"]}
    for _ in range(3):
        stored = ix.add_note(0, "Victor studies at Ingolstadt.", tags)
    assert stored == [Tag("victor frankenstein", "model"), Tag("ingolstadt", "model"), Tag("university", "model")]
    c = ix.counts()
    assert (c["notes"], c["tags"], c["chunk_tags"]) == (1, 3, 3)
    # replacing the note replaces its tags; tags used by nothing any more are removed
    ix.add_note(0, "Victor leaves Geneva.", [("geneva", "model"), ("keyword", "departure")])
    assert ix.tags_for(0) == [Tag("geneva", "model"), Tag("departure", "keyword")]
    c = ix.counts()
    assert (c["notes"], c["tags"], c["chunk_tags"]) == (1, 2, 2)
    assert ix.notes()[0].gist == "Victor leaves Geneva."


def test_shared_tags_are_one_row(ix):
    ix.add_note(0, "a", ["Victor"])
    ix.add_note(4, "b", ["victor", "Daemon"])
    assert ix.counts()["tags"] == 2 and ix.counts()["chunk_tags"] == 3
    ix.add_note(0, "a", [])
    assert ix.counts()["tags"] == 2  # still used by chunk 4


def test_top_names_count_passages_not_mentions(ix):
    ix.add_note(0, "a", {"name": ["Victor", "Elizabeth"], "keyword": ["geneva"]})
    ix.add_note(1, "b", {"name": ["Victor"], "model": ["Elizabeth"]})
    ix.add_note(2, "c", {"name": ["Clerval", "Victor"]})
    assert ix.top_names(2) == ["victor", "clerval"]  # a model tag does not count; ties by name
    from docstream.summarize import main_people
    assert main_people(ix, "Victor met Clerval. victor said: CLERVAL!") == ["Victor", "Clerval", "Elizabeth"]


def test_add_note_unknown_chunk_or_source(ix):
    with pytest.raises(ValueError, match="add_chunks"):
        ix.add_note(99, "nothing", [])
    with pytest.raises(ValueError, match="tag source"):
        ix.add_note(0, "x", {"llm": ["victor"]})
    assert ix.counts()["notes"] == 0


def test_notes_are_joined_and_ordered(ix):
    ix.add_note(3, "Justine is tried.", {"model": ["Justine", "trial"]})
    ix.add_note(1, "The creature wakes.", {"model": ["creature"], "keyword": ["November"]})
    notes = ix.notes()
    assert [n.chunk for n in notes] == [1, 3]
    n = notes[1]
    assert (n.chapter, n.chapter_title, n.tags) == (1, "Chapter 2", ["justine", "trial"])
    assert (n.char_start, n.char_end) == (ix.chunk(3).char_start, ix.chunk(3).char_end)
    assert [n.chunk for n in ix.notes(chapter=0)] == [1]


def test_first_unnoted_chunk(ix):
    assert ix.first_unnoted_chunk() == 0
    ix.add_note(0, "g0", [])
    ix.add_note(2, "g2", [])
    assert ix.first_unnoted_chunk() == 1
    for i in range(len(TEXTS)):
        ix.add_note(i, f"g{i}", [])
    assert ix.first_unnoted_chunk() is None
    ix.delete_note(4)
    assert ix.first_unnoted_chunk() == 4


@pytest.mark.parametrize("raw, expected", [
    ("Victor Frankenstein", "victor frankenstein"),
    ("  The   Creature ", "creature"),
    ('"Mont Blanc,"', "mont blanc"),
    ("“the Arctic”.", "arctic"),
    ("a", None),
    ("The", None),
    ("an", None),
    ("X", None),
    ("1818", None),
    ("12.5", None),
    ("", None),
    ("   ", None),
    ("...", None),
    ("which", None),
    ("#revenge!", "revenge"),
    ("paradise_lost", "paradise lost"),
    ("chapter 5", "chapter 5"),
    ("Walton's ship", "walton's ship"),
    ("a tale of two cities", "tale of two cities"),
    ("one two three four five", "one two three four five"),
    ("one two three four five six", None),
    (None, None),
])
def test_normalize_tag(raw, expected):
    assert normalize_tag(raw) == expected


def test_tags_are_deduped_after_normalisation(ix):
    stored = ix.add_note(0, "g", {"model": ["Victor", "the victor", "VICTOR.", "1818", "a"], "keyword": ["victor"]})
    assert stored == [Tag("victor", "model")]


# ---------------------------------------------------------------- summaries

def test_summaries(ix):
    ix.add_summary("rolling", "r1", 0, 1)
    ix.add_summary("rolling", "r2", 0, 3)
    ix.add_summary("rolling", "r2 again", 0, 3)  # same chunk_end replaces
    assert [s.text for s in ix.summaries("rolling")] == ["r1", "r2 again"]
    assert ix.latest_summary("rolling").text == "r2 again"
    ix.add_summary("chapter", "c0", 0, 1, chapter=0)
    ix.add_summary("chapter", "c0 v2", 0, 1, chapter=0)
    ix.add_summary("chapter", "c1", 2, 3, chapter=1)
    assert [s.text for s in ix.summaries("chapter")] == ["c0 v2", "c1"]
    assert [s.text for s in ix.summaries("chapter", chapter=1)] == ["c1"]
    ix.add_summary("book", "b1", 0, 5)
    ix.add_summary("book", "b2", 0, 5)
    assert [s.text for s in ix.summaries("book")] == ["b2"]
    with pytest.raises(ValueError):
        ix.add_summary("chapter", "no chapter", 0, 1)
    with pytest.raises(ValueError):
        ix.add_summary("epic", "x", 0, 1)


# ---------------------------------------------------------------- full text search and triggers

def test_fts_follows_notes_through_triggers(ix):
    assert ix.search("zeppelin") == []
    ix.add_note(2, "A zeppelin drifts over Geneva.", {"model": ["airship"]})
    hits = ix.search("zeppelin")
    assert [h.chunk for h in hits] == [2]
    assert hits[0].gist == "A zeppelin drifts over Geneva." and hits[0].tags == ["airship"]
    assert hits[0].chapter_title == "Chapter 2" and "[zeppelin]" in hits[0].snippet
    assert [h.chunk for h in ix.search("airships")] == [2]  # porter stemming over tags
    ix.add_note(2, "A balloon drifts over Geneva.", {"model": ["balloon"]})  # update
    assert ix.search("zeppelin") == [] and ix.search("airship") == []
    assert [h.chunk for h in ix.search("balloon")] == [2]
    ix.delete_note(2)  # delete
    assert ix.search("balloon") == []
    assert [h.chunk for h in ix.search("Elizabeth")] == [2]  # the chunk text is still indexed


def test_fts_follows_chunk_text_and_tag_renames(ix):
    ix.add_note(5, "Walton in the ice.", ["Arctic"])
    changed = make_chunks()
    changed[5].text = "Walton's ship was trapped by icebergs near Archangel."
    ix.add_chunks(changed)
    assert [h.chunk for h in ix.search("archangel")] == [5]
    assert [h.chunk for h in ix.search("arctic")] == [5]  # note + tags survive a text update
    ix.db.execute("UPDATE tags SET name = 'polar sea' WHERE name = 'arctic'")
    assert ix.search("arctic") == [] and [h.chunk for h in ix.search("polar")] == [5]
    ix.db.execute("DELETE FROM chunks WHERE ordinal = 5")
    assert ix.search("archangel") == [] and ix.counts()["notes"] == 0


def test_search_ranks_tags_over_text(ix):
    ix.add_note(0, "Victor studies.", {"model": ["geneva"]})
    hits = ix.search("geneva")
    assert [h.chunk for h in hits] == [0, 2]  # tag weight 3.0 beats one mention in the text
    assert hits[0].score > hits[1].score > 0


@pytest.mark.parametrize("question", [
    'who is "Elizabeth', "Elizabeth*", "Elizabeth AND", "AND OR NOT", "NEAR(Elizabeth", "NEAR(", "-Elizabeth",
    "^Elizabeth", "(Elizabeth", "Elizabeth)", "text:Elizabeth", "gist: Elizabeth", "Elizabeth'", "{Elizabeth}",
    "Eliza-beth'\"*^():", "Elizabeth NOT Geneva", "NOT AND", "Geneva AND NOT AND",
])
def test_fts_syntax_in_questions_never_raises(ix, question):
    hits = ix.search(question)
    if "Elizabeth" in question:
        assert 2 in [h.chunk for h in hits]


@pytest.mark.parametrize("question", ["", "   ", "the of and", "?!", '"', "*", "()", ":", "a"])
def test_nothing_searchable_gives_no_results(ix, question):
    assert fts_query(question) == ""
    assert ix.search(question) == []


def test_fts_query_shape():
    assert fts_query('What did "Victor" NEAR( the lab?') == '"victor" OR "near" OR "lab"'
    assert fts_query("reading books", prefix=True) == '"reading" OR "reading"* OR "books" OR "books"*'
    assert fts_query("ice", column="gist") == 'gist : ("ice")'
    with pytest.raises(ValueError):
        fts_query("ice", column="nope")


# ---------------------------------------------------------------- locking and concurrency

def test_writer_lock_blocks_a_second_writer_in_thread(ix, tmp_path):
    held, release = threading.Event(), threading.Event()

    def holder():
        with Index.open(tmp_path / "doc.db") as other, other.writer_lock(timeout=1):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(5)
        start = time.monotonic()
        with pytest.raises(IndexFileError, match="another docstream process is reading this document"):
            with ix.writer_lock(timeout=0.2):
                pass
        assert 0.15 < time.monotonic() - start < 2
    finally:
        release.set()
        t.join()
    with ix.writer_lock(timeout=0.5):  # free again
        pass


def test_writer_lock_blocks_a_second_process(ix, tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from docstream.index import Index
        with Index.open({str(tmp_path / 'doc.db')!r}) as ix, ix.writer_lock(timeout=1):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(IndexFileError) as e:
            with ix.writer_lock(timeout=0.1):
                pass
        assert "another docstream process is reading this document" in str(e.value)
        assert "doc.db.lock" in str(e.value)
    finally:
        proc.communicate("\n", timeout=10)
    with ix.writer_lock(timeout=1):
        pass


def test_writer_and_reader_connections_do_not_lock(tmp_path):
    path = tmp_path / "busy.db"
    with Index.open(path) as w:
        w.add_chunks(make_chunks(TEXTS * 20, per_chapter=10))
    errors: list[BaseException] = []
    done = threading.Event()

    def writer():
        try:
            with Index.open(path) as ix:
                for round_ in range(3):
                    for i in range(len(TEXTS) * 20):
                        ix.add_note(i, f"round {round_} note {i}", {"model": [f"tag{i % 7}", "shared"]})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            done.set()

    def second_writer():
        try:
            with Index.open(path) as ix:
                for i in range(30):
                    ix.add_summary("rolling", f"s{i}", 0, i)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=second_writer)]
    for t in threads:
        t.start()
    reads = 0
    with Index.open(path) as r:
        while not done.is_set() or reads < 5:
            r.search("shared note")
            r.notes()
            r.first_unnoted_chunk()
            reads += 1
    for t in threads:
        t.join()
    assert not errors, errors
    with Index.open(path) as ix:
        assert ix.counts()["notes"] == len(TEXTS) * 20
        assert ix.counts()["chunk_tags"] == len(TEXTS) * 20 * 2
        assert len(ix.summaries("rolling")) == 30
        assert ix.integrity() == "ok"


def test_long_write_transaction_waits_instead_of_failing(tmp_path):
    path = tmp_path / "slow.db"
    with Index.open(path) as a, Index.open(path) as b:
        a.add_chunks(make_chunks())
        a.db.conn.execute("BEGIN IMMEDIATE")
        result: list[object] = []

        def write_b():
            with Index.open(path) as bb:
                bb.add_note(1, "waited", ["patience"])
                result.append("ok")

        t = threading.Thread(target=write_b)
        t.start()
        time.sleep(0.3)
        assert result == []  # blocked on the write lock, not failed
        a.db.conn.execute("COMMIT")
        t.join(10)
        assert result == ["ok"]
        assert b.notes()[0].gist == "waited"
