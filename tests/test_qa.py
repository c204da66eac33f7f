"""The QA dev set and `docstream bench qa`: every gold span against its book, the plain BM25 baseline, the
rag answer mode and the harness end to end with the tiny random Llama (machinery, not scores)."""
import json
import re

import pytest
from conftest import REPO, SHARED
from typer.testing import CliRunner

from docstream.ask.baselines import oracle_prompt, sentence_around
from docstream.bench import qa
from docstream.cli.main import app
from docstream.index.plain import PlainIndex, plain_chunks
from docstream.index.search import STOP_WORDS
from docstream.text.load import load
from docstream.text.numbers import numbers, numerals

DEV = REPO / "samples" / "qa" / "dev.jsonl"
QS = qa.load_questions(DEV)
SAMPLES = {"pg35-time-machine.txt": REPO / "samples" / "time-machine.txt"}  # the same file as the corpus's


def book(name):
    p = SHARED / "gutenberg" / name
    if p.is_file():
        return p
    if name in SAMPLES:
        return SAMPLES[name]
    pytest.skip(f"{name} needs ../shared/corpus/gutenberg")


def test_the_dev_set_has_both_kinds_for_every_book():
    assert len(QS) >= 60 and len({q["id"] for q in QS}) == len(QS)
    books = {q["book"] for q in QS}
    assert len(books) == 6
    for b in books:
        kinds = [q["kind"] for q in QS if q["book"] == b]
        assert kinds.count("lexical") >= 5 and kinds.count("paraphrase") >= 5


@pytest.mark.parametrize("q", QS, ids=[q["id"] for q in QS])
def test_every_gold_span_is_its_sentence_in_the_middle_of_the_book(q):
    doc = load(book(q["book"]))
    s, e = q["char_start"], q["char_end"]
    assert doc.text[s:e] == q["evidence"]
    assert 0.15 <= (s - doc.body_start) / (doc.body_end - doc.body_start) <= 0.85
    assert any(qa.correct(q["evidence"], [a]) for a in q["answers"])  # the answer is in the sentence
    if q["kind"] == "paraphrase":  # no content word shared with the sentence, names aside
        words = {w for w in re.findall(r"[a-z]{3,}", q["question"].lower()) if w not in STOP_WORDS}
        names = {w.lower() for w in re.findall(r"\b[A-Z][a-z]+", q["evidence"])}
        shared = {w for w in words - names if re.search(rf"\b{w}(?:s|es|ed|d|ing)?\b", q["evidence"].lower())}
        assert not shared, shared


def test_plain_chunks_cover_the_body_at_paragraphs():
    doc = load(REPO / "samples" / "time-machine.txt")
    chunks = plain_chunks(doc, doc.body_start, doc.body_end)
    assert all(doc.text[c.start:c.end] == c.text and len(c.text) <= 2000 for c in chunks)
    assert all(a.end <= b.start and not doc.text[a.end:b.start].strip() for a, b in zip(chunks, chunks[1:]))
    assert chunks[0].start >= doc.body_start and chunks[-1].end <= doc.body_end
    ix = PlainIndex(chunks)
    q = next(q for q in QS if q["id"] == "tm-07")  # lexical: BM25 finds it at rank 1
    top = ix.top(q["question"], 5)
    assert qa.covered([(top[0].start, top[0].end)], q["char_start"], q["char_end"])
    assert ix.top("the of and", 5) == []  # nothing searchable: no hits, no error


def test_covered_and_correct():
    assert qa.covered([(0, 10), (100, 200)], 150, 250)  # half of the gold span inside one span
    assert not qa.covered([(0, 10), (100, 140)], 150, 250)
    assert qa.correct("It was a Brontosaurus.", ["a brontosaurus"]) and not qa.correct("brontosauruses", ["brontosaurus"])
    assert qa.correct("The answer is: 3 inches.", ["three inches"]) and qa.correct("39 of them", ["thirty-nine"])
    assert qa.correct("a thousand pounds", ["one thousand pounds"]) and qa.correct("Half-past 8", ["half-past eight"])
    assert not qa.correct("4 inches", ["three inches"]) and not qa.correct("someone", ["one"])
    assert numerals("Twenty-nine days, eight hundred pounds, 421") == "29 days, 800 pounds, 421"
    assert numbers("thirty-nine beryls, 3 inches, one thousand pounds") == {"39", "3", "1000"}


def test_oracle_evidence_is_the_sentence_with_its_neighbours():
    doc = load(REPO / "samples" / "time-machine.txt")
    q = next(q for q in QS if q["id"] == "tm-09")
    a, b = sentence_around(doc.text, q["char_start"], q["char_end"])
    assert a < q["char_start"] and b > q["char_end"] and b - a < 3000
    prompt, cites = oracle_prompt(doc, q["question"], q["char_start"], q["char_end"])
    assert cites[0].quote == doc.text[a:b] and " ".join(q["evidence"].split()) in prompt


def test_bench_qa_runs_every_mode_with_the_tiny_model(tiny_dir, tmp_path, home):
    out = tmp_path / "qa.json"
    data = tmp_path / "dev.jsonl"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pg35-time-machine.txt").write_bytes(SAMPLES["pg35-time-machine.txt"].read_bytes())
    data.write_text("".join(json.dumps(q) + "\n" for q in [q for q in QS if q["book"] == "pg35-time-machine.txt"][:2]))
    res = CliRunner().invoke(app, ["bench", "qa", "--data", str(data), "--corpus", str(corpus),
                                   "--modes", "rag,oracle,truncate", "-m", str(tiny_dir), "--window", "512",
                                   "--out", str(out), "--json"])
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)["summary"]
    assert set(summary) == {"rag", "oracle", "truncate"}
    assert summary["oracle"]["cited"] == 1.0 and summary["truncate"]["retrieved"] == 0.0
    cells = json.loads(out.read_text())["cells"]
    assert {c["mode"] for c in cells} == {"rag", "oracle", "truncate"} and all("answer" in c for c in cells)


def test_bench_qa_refuses_unknown_modes_and_books(tmp_path):
    res = CliRunner().invoke(app, ["bench", "qa", "--modes", "bm42", "--data", str(DEV)])
    assert res.exit_code == 2 and "use a subset of docstream,rag,oracle,truncate,stream" in res.stderr
    res = CliRunner().invoke(app, ["bench", "qa", "--books", "ulysses", "--data", str(DEV)])
    assert res.exit_code == 2 and "no question is about ulysses" in res.stderr
