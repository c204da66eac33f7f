"""A first answer at once from the text index of a file not read yet, then the read, with nothing done twice;
and a question nothing in the text matches is answered with that, not with a guess."""
import json

from typer.testing import CliRunner

import docstream
from docstream.ask.answer import NO_EVIDENCE
from docstream.index import dense
from docstream.cli.main import app
from docstream.index.db import Index

runner = CliRunner()
SMALL = {"window": 512, "chunk_tokens": 128}
QUESTION = "What did the Rabbit take out of its waistcoat-pocket?"


def test_first_answer_then_read_resumes_from_the_same_chunks(home, tiny_dir, short_text):
    doc = docstream.open(short_text, model=str(tiny_dir), **SMALL)
    ans = doc.ask(QUESTION, max_tokens=4, wait=False)
    assert ans.first and ans.citations
    text = doc.source.text
    for c in ans.citations:  # cited from the text alone, exactly
        assert text[c.char_start:c.char_end] == c.quote
    assert any("waistcoat-pocket" in c.quote for c in ans.citations)
    with Index.open(doc.index_path) as ix:
        chunks = [(c.ordinal, c.char_start, c.char_end) for c in ix.chunks()]
        assert ix.document().status == "reading" and not ix.notes()
        words = ix.words()  # embedded with the chunks: a first answer searches related words too
        assert (len(words[0]) > 100) == (dense.model_dir() is not None) and ix.window_count() == 0
    res = doc.read()
    assert res.status == "done" and res.chunks == len(chunks)
    with Index.open(doc.index_path) as ix:
        assert [(c.ordinal, c.char_start, c.char_end) for c in ix.chunks()] == chunks  # not chunked twice
        assert len(ix.notes()) == len(chunks) and ix.words() == words  # nor its words embedded twice
    assert not doc.ask(QUESTION, max_tokens=4, wait=False).first


def test_cli_prints_a_first_answer_then_reads_then_answers(home, tiny_dir, short_text):
    args = ["ask", str(short_text), QUESTION, "-m", str(tiny_dir), "--window", "512", "--chunk-tokens", "128",
            "--max-tokens", "4"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["first"] is False and out["first_answer"]["first"] is True
    assert out["first_answer"]["citations"] and "Reading the whole file" in res.stderr
    again = runner.invoke(app, args)  # read now: no first answer
    assert again.exit_code == 0 and "(first answer" not in again.stdout and "Reading the whole" not in again.stderr


def test_cli_first_answer_is_marked_in_text_and_wait_reads_first(home, tiny_dir, short_text, tmp_path):
    args = ["ask", str(short_text), QUESTION, "-m", str(tiny_dir), "--window", "512", "--chunk-tokens", "128",
            "--max-tokens", "4", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("(first answer, from the text alone) ")
    assert res.stdout.count("  [1] ") == 2  # cited twice: the first answer and the full one
    other = tmp_path / "other.txt"
    other.write_text(short_text.read_text(encoding="utf-8") + "\nThe end.\n", encoding="utf-8")
    waited = runner.invoke(app, ["ask", str(other), *args[2:], "--wait"])
    assert waited.exit_code == 0 and "(first answer" not in waited.stdout


def test_nothing_matching_is_said_not_guessed(home, tiny_dir, short_text):
    doc = docstream.open(short_text, model=str(tiny_dir), **SMALL)
    ans = doc.ask("Which xylophone did Zanzibar's quokka polish?", max_tokens=8, wait=False)
    assert ans.answer == NO_EVIDENCE and not ans.citations
