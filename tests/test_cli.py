"""End-to-end through the CLI with the tiny random Llama saved as a local model directory (no download).

The tiny model writes nonsense, so these tests assert the *machinery*: the index, notes, spans, citations,
JSON shapes, reuse and error mapping — not the quality of the words.
"""
import json

import pytest
from typer.testing import CliRunner

from docstream.cli.main import app

runner = CliRunner()
SMALL = ["--window", "512", "--chunk-tokens", "128"]


def run(*args, code=0):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    return res


@pytest.fixture
def read_short(home, tiny_dir, short_text):
    res = run("read", short_text, "-m", tiny_dir, *SMALL, "--json")
    return short_text, json.loads(res.stdout)


def test_read_builds_index(read_short, tiny_dir):
    path, out = read_short
    assert out["chunks"] > 10 and out["chapters"] == 2 and out["status"] == "done"
    from docstream.index.db import Index

    with Index.open(out["index"]) as ix:
        assert ix.first_unnoted_chunk() is None
        assert len(ix.notes()) == out["chunks"]
        assert ix.latest_summary("book") is not None
        assert len(ix.summaries("chapter")) == 2
        assert ix.integrity() == "ok"
        text = path.read_text(encoding="utf-8")
        for c in ix.chunks():
            assert text[c.char_start:c.char_end] == c.text


def test_read_again_reuses_index(read_short, tiny_dir):
    path, out = read_short
    again = json.loads(run("read", path, "-m", tiny_dir, *SMALL, "--json").stdout)
    assert again["index"] == out["index"] and again["tokens"] == 0
    other = json.loads(run("read", path, "-m", tiny_dir, "--window", "640", "--chunk-tokens", "128",
                           "--json").stdout)
    assert other["index"] != out["index"]


def test_notes_and_search(read_short, tiny_dir):
    path, out = read_short
    notes = json.loads(run("notes", path, "-m", tiny_dir, *SMALL, "--json").stdout)
    assert len(notes) == out["chunks"]
    assert [n["chunk"] for n in notes] == sorted(n["chunk"] for n in notes)
    hits = json.loads(run("search", path, "Rabbit", "-m", tiny_dir, *SMALL, "--json").stdout)
    assert hits and all("rabbit" in path.read_text()[h["char_start"]:h["char_end"]].lower() for h in hits)
    run("search", path, 'NEAR( "rabbit * AND -^', "-m", tiny_dir, *SMALL)


def test_ask_cites_exact_spans(read_short, tiny_dir):
    path, _ = read_short
    res = run("ask", path, "What did the White Rabbit take out of its waistcoat-pocket?", "-m", tiny_dir, *SMALL,
              "--json", "--max-tokens", "8")
    out = json.loads(res.stdout)
    assert set(out) >= {"question", "answer", "citations", "retrieved", "timings"}
    assert out["citations"], "the rabbit passage must be cited"
    text = path.read_text(encoding="utf-8")
    for c in out["citations"]:
        assert text[c["char_start"]:c["char_end"]] == c["quote"]
        assert c["line_start"] == text.count("\n", 0, c["char_start"]) + 1
    assert any("waistcoat" in c["quote"] for c in out["citations"])
    assert set(out["timings"]) == {"retrieve_ms", "generate_ms", "total_ms"}


def test_ask_with_fts_syntax_is_answered(read_short, tiny_dir):
    path, _ = read_short
    out = json.loads(run("ask", path, '"Rabbit" AND NEAR(watch*) -pocket ^', "-m", tiny_dir, *SMALL, "--json",
                         "--max-tokens", "4").stdout)
    assert out["citations"]


def test_summarize_formats(read_short, tiny_dir):
    path, out = read_short
    data = json.loads(run("summarize", path, "-m", tiny_dir, *SMALL, "--format", "json").stdout)
    assert data["book"] and len(data["chapters"]) == 2 and len(data["notes"]) == out["chunks"]
    assert data["chapters"][0]["title"].startswith("CHAPTER I")
    md = run("summarize", path, "-m", tiny_dir, *SMALL, "--format", "md").stdout
    assert md.startswith("# ") and md.count("\n## ") == 2
    lines = run("summarize", path, "-m", tiny_dir, *SMALL, "--level", "chapter").stdout.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("CHAPTER II")


def test_baseline_modes_run(home, tiny_dir, short_text):
    for mode in ("truncate", "stream"):
        out = json.loads(run("ask", short_text, "who?", "--mode", mode, "-m", tiny_dir, *SMALL, "--json",
                             "--max-tokens", "4").stdout)
        assert out["mode"] == mode and out["citations"] == []


def test_rag_mode_cites_plain_chunks_without_reading(home, tiny_dir, short_text):
    from docstream.text.load import load

    out = json.loads(run("ask", short_text, "What did the Rabbit take out of its waistcoat-pocket?", "--mode", "rag", "-m", tiny_dir, *SMALL,
                         "--json", "--max-tokens", "4").stdout)
    text = load(short_text).text
    assert out["mode"] == "rag" and out["citations"]
    assert all(text[c["char_start"]:c["char_end"]] == c["quote"] for c in out["citations"])
    assert any("waistcoat-pocket" in c["quote"] for c in out["citations"])
    assert not list((home / "index").glob("*.db"))  # plain BM25 needs no read


def test_help_shows_the_defaults_given_in_words():
    """A default written as "[default: …]" inside a help text is eaten as rich markup; it must be shown."""
    assert "smollm2-135m" in run("ask", "--help").stdout
    assert "gutenberg" in run("bench", "chapters", "--help").stdout
    assert "Dolores Park" in run("bench", "needle", "--help").stdout


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from docstream.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
