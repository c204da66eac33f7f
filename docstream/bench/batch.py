"""Throughput of reading many documents (`docstream bench batch`): one at a time vs in lockstep.

Design choices:
- The documents are the first `tokens` tokens of each given text (default: the Gutenberg novels in
  `../shared/corpus/gutenberg/`, cycled to `docs` documents), written to a temporary folder, so both runs read
  the very same texts into fresh indexes.
- Run 1 reads them one after another with notes decoded one at a time (`batch=1`); run N reads `width` of
  them in lockstep (`api.read_together`: one sink cache each, notes of all decoded in shared batches).
- Printed: documents/hour, decode tokens/s (notes + summaries, over the time spent decoding), and the ratio
  N vs 1 of each, from one run.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ..backend.base import Backend
from ..errors import InputError
from .stream import read_body

GUTENBERG = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "gutenberg"


def _texts(paths: list[Path], docs: int, tokens: int, engine: Backend) -> list[str]:
    if not paths:
        if not GUTENBERG.is_dir():
            raise InputError(f"no texts given and {GUTENBERG} is missing — pass some .txt files")
        paths = sorted(GUTENBERG.glob("*.txt"))
    bodies = [read_body(p) for p in paths]
    out = []
    for i in range(docs):
        ids = engine.encode(bodies[i % len(bodies)])
        start = (i // len(bodies)) * tokens  # a later slice when texts are reused
        out.append(engine.tokenizer.decode(ids[start:start + tokens]))
    return out


def _run(engine: Backend, files: list[Path], home: Path, width: int, batch: int, window: int) -> dict[str, Any]:
    from ..api import Document, read_together

    docs = [Document(f, engine=engine, window=window, index=home / f"{f.stem}-w{width}-b{batch}.db") for f in files]
    for d in docs:
        d.read_batch = batch
    t = time.perf_counter()
    chunks = 0
    with engine.measure() as cost:
        for _, res, err in read_together(docs, width=width, batch=batch):
            if err is not None:
                raise err
            chunks += res.chunks
    s = time.perf_counter() - t
    decoded = cost["decode_tokens"]
    return {"width": width, "batch": batch, "seconds": round(s, 1), "chunks": chunks,
            "docs_per_hour": round(len(files) * 3600 / s, 1), "decode_tokens": decoded,
            "decode_tok_s": round(decoded / max(cost["seconds_in"].get("decode", 0.0), 1e-9), 1),
            "seconds_in": cost["seconds_in"]}


def run(paths: list[Path], docs: int = 8, tokens: int = 2048, width: int = 8, model: str | None = None,
        window: int = 1024) -> dict[str, Any]:
    from ..api import get_engine

    engine = get_engine(model)
    with tempfile.TemporaryDirectory(prefix="docstream-bench-batch-") as tmp:
        home = Path(tmp)
        files = []
        for i, text in enumerate(_texts(list(paths), docs, tokens, engine)):
            f = home / f"doc{i:02d}.txt"
            f.write_text(text, encoding="utf-8")
            files.append(f)
        one = _run(engine, files, home, width=1, batch=1, window=window)
        many = _run(engine, files, home, width=width, batch=width, window=window)
    return {"model": engine.name, "docs": docs, "tokens_per_doc": tokens, "window": window, "runs": [one, many],
            "docs_per_hour_ratio": round(many["docs_per_hour"] / one["docs_per_hour"], 2),
            "decode_tok_s_ratio": round(many["decode_tok_s"] / max(one["decode_tok_s"], 1e-9), 2)}


def print_report(r: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(r, indent=2))
        return
    print(f"{r['docs']} documents × {r['tokens_per_doc']} tokens, window {r['window']} ({r['model']})")
    print(f"{'run':<22}{'seconds':>9}{'docs/hour':>11}{'decode tok/s':>14}{'decode tokens':>15}")
    for x in r["runs"]:
        label = "one at a time" if x["width"] == 1 else f"lockstep, batch {x['batch']}"
        print(f"{label:<22}{x['seconds']:>9.1f}{x['docs_per_hour']:>11.1f}{x['decode_tok_s']:>14.1f}"
              f"{x['decode_tokens']:>15,}")
    print(f"ratio: documents/hour {r['docs_per_hour_ratio']:.2f}×, decode tokens/s {r['decode_tok_s_ratio']:.2f}×")
