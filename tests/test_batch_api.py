"""Batch jobs (`docstream.batch`, `docstream batch`) with the tiny random Llama on two small texts.

The tiny model writes nonsense: these tests check the machinery — streaming, error results, the JSONL,
resuming without re-reading, exit codes, `to_dict()` round trips and that Ray gives the local results.
"""
import json
import sys

import pytest
from typer.testing import CliRunner

import docstream
from docstream.cli.main import app

REPO_SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[1] / "samples" / "short.txt"
SMALL = {"window": 512, "chunk_tokens": 128}
QUESTIONS = ["Who is Alice?", "What did the Rabbit take out of its waistcoat-pocket?"]
runner = CliRunner()


@pytest.fixture
def texts(tmp_path):
    """Two small documents (~3 KB each, sliced from samples/short.txt) and a path that does not exist."""
    text = REPO_SAMPLE.read_text(encoding="utf-8")
    a, b = tmp_path / "alice-1.txt", tmp_path / "alice-2.txt"
    a.write_text(text[:3000], encoding="utf-8")
    start = text.index("CHAPTER II")
    b.write_text(text[start:start + 2500], encoding="utf-8")
    return a, b, tmp_path / "missing.txt"


def lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def strip_times(d):
    """A result's dict without the wall-clock parts (they differ from run to run)."""
    d = json.loads(json.dumps(d))
    d.pop("seconds")
    if d["read"]:
        for k in ("seconds", "tokens_per_s"):
            d["read"].pop(k)
    for a in d["answers"]:
        a.pop("timings")
    return d


def check_ok(r, path):
    from docstream.index.db import Index

    assert r.ok and r.error is None and r.document == str(path)
    assert r.read.status == "done" and r.read.chunks > 0 and r.read.tokens > 0
    assert [a.question for a in r.answers] == QUESTIONS
    text = path.read_text(encoding="utf-8")
    for a in r.answers:
        assert a.citations, a
        for c in a.citations:
            assert text[c.char_start:c.char_end] == c.quote
    assert isinstance(r.summary, str) and r.summary
    with Index.open(r.index) as ix:
        assert len(ix.notes()) == r.read.chunks


def test_batch_streams_errors_and_resumes(home, tiny_dir, texts, tmp_path, monkeypatch):
    a, b, missing = texts
    out = tmp_path / "out" / "results.jsonl"
    kw = dict(questions=QUESTIONS, summarize=True, model=str(tiny_dir), jsonl=out, **SMALL)
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    it = docstream.batch([a, missing, binary, b], **kw)

    first = next(it)  # streamed: a failure comes out (and is written) before the documents are read
    assert first.status == "error" and len(lines(out)) == 1 and lines(out)[0] == first.to_dict()
    results = [first, *it]
    by = {r.document: r for r in results}
    assert len(by) == 4
    bad, binary_bad = by[str(missing)], by[str(binary)]
    assert bad.status == "error" and "missing.txt" in bad.error
    assert "\n" not in bad.error and bad.answers == [] and bad.read is None
    assert binary_bad.status == "error" and "binary" in binary_bad.error.lower()
    first, second = by[str(a)], by[str(b)]
    check_ok(first, a)
    check_ok(second, b)

    written = lines(out)
    assert written == [r.to_dict() for r in results]
    for d, r in zip(written, results):  # typed dataclasses round-trip through the JSON line
        back = docstream.Result.from_dict(d)
        assert back == r and back.to_dict() == d
        assert isinstance(back.answers[0], docstream.Answer) if back.ok else True

    # Rerun: the finished documents are skipped (not re-read, their lines kept once); the error is retried.
    def no_read(self, *args, **kwargs):
        raise AssertionError(f"{self.path} was read again")

    monkeypatch.setattr(docstream.Document, "read", no_read)
    again = list(docstream.batch([a, missing, b, a], **kw))  # (the same file twice is processed once)
    assert [(r.document, r.status) for r in again] == [(str(missing), "error")]
    assert lines(out)[:4] == written and len(lines(out)) == 5

    # Other questions: the documents are processed again, but their finished indexes are reused.
    other = list(docstream.batch([a, b], questions=["Who is the Queen?"], model=str(tiny_dir), **SMALL))
    assert [r.status for r in other] == ["ok", "ok"]
    for r, before in zip(other, (first, second)):
        assert r.read.status == "reused" and r.read.tokens == 0 and r.read.seconds == 0
        assert r.index == before.index and r.read.chunks == before.read.chunks and r.key != before.key
        assert r.summary is None and len(r.answers) == 1


def test_batch_validates_eagerly(home, tiny_dir, texts):
    a, _, _ = texts
    with pytest.raises(docstream.DocstreamError, match="executor"):
        docstream.batch([a], executor="spark")
    with pytest.raises(docstream.DocstreamError, match="question"):
        docstream.batch([a], questions=["   "], model=str(tiny_dir))
    with pytest.raises(docstream.DocstreamError, match="window"):
        docstream.batch([a], model=str(tiny_dir), window=100_000)
    with pytest.raises(docstream.DocstreamError, match="not found"):
        docstream.batch([a], model=str(a.parent / "no-such-model"))
    with pytest.raises(docstream.DocstreamError, match="no documents"):
        docstream.batch([], model=str(tiny_dir))


def test_cli_batch(home, tiny_dir, texts, tmp_path):
    a, b, missing = texts
    qfile = tmp_path / "questions.txt"
    qfile.write_text("\n".join(QUESTIONS) + "\n\n", encoding="utf-8")
    out = tmp_path / "cli.jsonl"
    args = ["batch", a, missing, b, "--questions", qfile, "--jsonl", out, "-m", tiny_dir, "--window", "512",
            "--chunk-tokens", "128"]
    res = runner.invoke(app, [str(x) for x in args])
    assert res.exit_code == 1, (res.stdout, res.stderr)
    printed = [json.loads(x) for x in res.stdout.splitlines()]
    assert printed == lines(out)  # stdout and the JSONL carry the same lines (in the order documents finish)
    order = {str(a): 0, str(missing): 1, str(b): 2}
    printed.sort(key=lambda d: order[d["document"]])
    assert [d["status"] for d in printed] == ["ok", "error", "ok"]
    assert "1 of 3 documents failed" in res.stderr and "missing.txt" in res.stderr
    assert [d["question"] for d in printed[0]["answers"]] == QUESTIONS and printed[0]["summary"] is None
    # The API gives the same results; the CLI's lines are exactly `to_dict()`.
    api = list(docstream.batch([str(a), str(missing), str(b)], questions=QUESTIONS, model=str(tiny_dir), **SMALL))
    assert [r.read.status for r in api if r.ok] == ["reused", "reused"]  # the CLI's indexes, not read again

    def same(d):
        d = strip_times(d)
        if d["read"]:
            d["read"] = {k: v for k, v in d["read"].items() if k not in ("status", "tokens")}
        return d

    api.sort(key=lambda r: order[r.document])
    assert [same(r.to_dict()) for r in api] == [same(d) for d in printed]

    # Rerun only the good files: nothing to do, exit 0, nothing printed, nothing appended.
    res = runner.invoke(app, [str(x) for x in args if x is not missing])
    assert res.exit_code == 0 and res.stdout == "" and "Nothing to do" in res.stderr, res.stderr
    assert len(lines(out)) == 3


@pytest.mark.parametrize("extra, message", [
    (["--executor", "spark"], "--executor"),
    (["--questions", "/no/such/questions.txt"], "--questions"),
    (["--window", "100000"], "window"),
    (["--ray-address", "auto"], "--executor ray"),
])
def test_cli_batch_bad_arguments(home, tiny_dir, texts, extra, message):
    a, _, _ = texts
    res = runner.invoke(app, ["batch", str(a), "-m", str(tiny_dir), "-q", *extra])
    assert res.exit_code == 2 and message in res.stderr, (res.exit_code, res.stderr)


def test_cli_batch_without_ray(home, tiny_dir, texts, monkeypatch):
    a, _, _ = texts
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    res = runner.invoke(app, ["batch", str(a), "-m", str(tiny_dir), "--executor", "ray"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: the ray executor needs ray — pip install 'docstream[ray]'"


def test_ray_executor_matches_local(home, tiny_dir, texts, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from docstream.index.db import Index

    a, b, missing = texts
    kw = dict(questions=QUESTIONS, model=str(tiny_dir), **SMALL)
    local = {r.document: r for r in docstream.batch([a, b, missing], **kw)}

    # The Ray workers read in a fresh DOCSTREAM_HOME (passed to them), so they really read, not reuse.
    ray_home = tmp_path / "ray-home"
    ray_home.mkdir()
    (ray_home / "models").symlink_to(home / "models", target_is_directory=True)
    monkeypatch.setenv("DOCSTREAM_HOME", str(ray_home))
    out = tmp_path / "ray.jsonl"
    assert not ray.is_initialized()
    remote = list(docstream.batch([a, b, missing], executor="ray", jsonl=out, **kw))
    assert not ray.is_initialized()  # the local runtime batch() started is stopped again

    assert sorted(r.document for r in remote) == sorted(local)
    assert lines(out) == [r.to_dict() for r in remote]
    for r in remote:
        want = local[r.document]
        assert r.status == want.status
        if not r.ok:
            assert r.error == want.error
            continue
        assert r.index.startswith(str(ray_home)) and r.read.status == "done" and r.read.tokens == want.read.tokens
        assert strip_times(r.to_dict()) == {**strip_times(want.to_dict()), "index": r.index,
                                            "read": {**strip_times(want.to_dict())["read"], "index": r.index}}
        with Index.open(r.index) as ix, Index.open(want.index) as wx:
            assert [n.gist for n in ix.notes()] == [n.gist for n in wx.notes()]


def test_jsonl_survives_a_partial_line(tmp_path):
    """A kill mid-write leaves a partial last line: it is ignored, and the next line is not glued onto it."""
    from docstream.jobs.batch import Result, _load_done, _Sink

    out = tmp_path / "out.jsonl"
    ok = Result(document="a.txt", status="ok", key="k1")
    out.write_text(json.dumps(ok.to_dict()) + "\n" + '{"document": "b.txt", "sta', encoding="utf-8")
    sink = _Sink(out)
    sink.write(Result(document="c.txt", status="error", error="boom"))
    sink.close()
    raw = out.read_text(encoding="utf-8").splitlines()
    assert len(raw) == 3 and json.loads(raw[2])["document"] == "c.txt"
    assert _load_done(out, str(tmp_path)) == {str(tmp_path / "a.txt"): {"k1"}}


def test_documents_read_together_decode_their_book_summaries_in_one_batch(home, tiny_dir, texts, monkeypatch):
    """Three documents of different lengths read in lockstep: the last decodes wait until no reader can fork
    more, so the parts of the three book summaries (the last outputs) share one decode call."""
    from docstream.api import read_together
    from docstream.backend.local import Engine
    from docstream.index.db import Index
    from docstream.read.reader import Reader

    a, b, _ = texts
    c = a.with_name("alice-3.txt")
    c.write_text(a.read_text(encoding="utf-8")[:1200], encoding="utf-8")
    books, calls, kept = [], [], []
    book_jobs, decode = Reader._book_jobs, Engine.decode

    def spy_book_jobs(self):
        jobs = book_jobs(self)
        books.append({id(j.fork) for j in jobs})
        return jobs

    def spy_decode(self, forks, width=None):
        kept.extend(forks)  # alive, so no later fork (a book part) can reuse a decoded fork's id
        calls.append({id(f) for f in forks})
        return decode(self, forks, width=width)

    monkeypatch.setattr(Reader, "_book_jobs", spy_book_jobs)
    monkeypatch.setattr(Engine, "decode", spy_decode)
    docs = [docstream.open(p, model=str(tiny_dir), **SMALL) for p in (a, b, c)]
    results = list(read_together(docs, width=3, batch=4))
    assert [err for _, _, err in results] == [None] * 3
    assert len({r.chunks for _, r, _ in results}) > 1  # the documents really differ in length
    assert len(books) == 3 and all(books)  # each document's book summary is forked, in one or more parts
    every = set().union(*books)
    assert [len(every & call) for call in calls if every & call] == [len(every)]
    for d in docs:
        with Index.open(d.index_path) as ix:
            assert len(ix.summaries("book")) == 1
