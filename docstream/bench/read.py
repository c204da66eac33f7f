"""Cost of reading (`docstream bench read FILE`): a full `read` against a bare chunked prefill of the same tokens.

Design choices:
- One process, one loaded model, the same chunks: the bare prefill (every chunk fed through the same sink
  cache, reading instruction pinned, no notes, no summaries), then the real `read` into a fresh index in a
  temporary directory, then the bare prefill again. The ratio read / prefill (the mean of the two) is what
  notes and summaries cost on top of the unavoidable pass over the text. This VM's speed drifts by 20-30 %
  within minutes (steal time), so a prefill on each side of the read keeps drift from passing for cost.
- Decode tokens (notes + summaries) come from the engine's counter; peak RSS from `ru_maxrss`.
- `--batch` sets how many notes are decoded together (1 = one note at a time, to show what batching buys).
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run(path: str | Path, model: str | None = None, window: int = 2048, chunk_tokens: int = 0, batch: int = 16,
        threads: int | None = None) -> dict[str, Any]:
    import torch

    from .. import prompts
    from ..api import Document, get_engine
    from ..text.chunk import chunk_document

    if threads:
        torch.set_num_threads(threads)
    engine = get_engine(model)
    with tempfile.TemporaryDirectory(prefix="docstream-bench-read-") as tmp:
        doc = Document(path, engine=engine, window=window, chunk_tokens=chunk_tokens,
                       index=Path(tmp) / "bench.db")
        s = doc.settings
        t = time.perf_counter()
        chapters, chunks = chunk_document(doc.source, engine.tokenizer, s.chunk_tokens)
        chunk_s = time.perf_counter() - t

        def bare() -> tuple[int, float]:
            t = time.perf_counter()
            stream = engine.stream(sinks=s.sinks, window=s.window, max_pinned=s.max_pinned)
            stream.start(prompts.get("read_system").render(title=doc.title, summary="Nothing yet."),
                         prompts.get("read_user").render(title=doc.title))
            return sum(stream.feed(c.text) for c in chunks), time.perf_counter() - t

        tokens, before_s = bare()
        doc.read_batch = batch
        t = time.perf_counter()
        with engine.measure() as cost:
            res = doc.read()
        read_s = time.perf_counter() - t
        _, after_s = bare()
        prefill_s = (before_s + after_s) / 2
        words = len(doc.source.text.split())
    return {
        "file": str(path), "model": engine.name, "window": s.window, "chunk_tokens": s.chunk_tokens, "batch": batch,
        "threads": torch.get_num_threads(), "words": words, "tokens": tokens, "chunks": len(chunks),
        "chapters": len(chapters), "chunking_s": round(chunk_s, 2), "prefill_s": round(prefill_s, 1),
        "prefill_before_s": round(before_s, 1), "prefill_after_s": round(after_s, 1),
        "prefill_tok_s": round(tokens / prefill_s, 1), "read_s": round(read_s, 1),
        "read_tok_s": round(tokens / read_s, 1), "ratio": round(read_s / prefill_s, 2),
        "decode_tokens": cost["decode_tokens"],
        "minutes_per_100k_words": round(read_s / 60 * 100_000 / max(words, 1), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "status": res.status,
        "seconds_in": cost["seconds_in"],
        "other_s": round(read_s - sum(cost["seconds_in"].values()), 1),  # gates, index, sentence embeddings
    }


def print_report(r: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(r, indent=2))
        return
    print(f"{Path(r['file']).name}: {r['words']:,} words, {r['tokens']:,} tokens, {r['chunks']} chunks, "
          f"{r['chapters']} chapters ({r['model']}, window {r['window']}, chunk {r['chunk_tokens']}, "
          f"batch {r['batch']}, {r['threads']} threads)")
    print(f"  bare chunked prefill  {r['prefill_s']:>8.1f} s  {r['prefill_tok_s']:>7.1f} tok/s  (mean of "
          f"{r['prefill_before_s']:.1f} s before the read and {r['prefill_after_s']:.1f} s after)")
    print(f"  read (notes+summaries){r['read_s']:>8.1f} s  {r['read_tok_s']:>7.1f} tok/s")
    print(f"  ratio read/prefill    {r['ratio']:>8.2f}")
    print(f"  decode tokens         {r['decode_tokens']:>8,}")
    print(f"  minutes / 100k words  {r['minutes_per_100k_words']:>8.1f}")
    print(f"  peak RSS              {r['peak_rss_mib']:>8,} MiB")
    print("  where read's time goes: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds_in"].items())
          + f", the rest (gates, index, sentence and word embeddings) {r['other_s']:.1f} s")
    sys.stdout.flush()
