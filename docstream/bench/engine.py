"""Weight formats side by side (`docstream bench engine`): speed, memory and quality of each on the same text.

Design choices:
- Every format runs in its own subprocess, one after the other (never two at once: they would share the
  cores), so its peak RSS is honest and one format's allocator state cannot help the next.
- `--rounds N` measures every format N times, interleaved (fp32, bf16, int4, fp32, ...), and keeps each
  speed's best round: on a shared machine other load (and hypervisor steal time) only ever slows a run down,
  so the best round is the least disturbed one, and every format had the same chances.
- The same token ids for every format: the first `tokens` tokens of FILE (a Gutenberg novel's body).
- prefill: `prefill_chunk`-token chunks fed into the sink cache with no logits, as the reader feeds a chunk.
- decode: greedy forks of the real reading path (`Engine.prompt_fork` + `Engine.decode`, no stop strings), at
  batch 1 (one fork decoded alone) and at batch 8 (eight forks in one ragged batch); tok/s = tokens generated
  / wall seconds.
- quality: sink-cache perplexity of the same tokens (`bench stream`'s scorer: sinks + window, 64-token chunks;
  for int4 through its int4 weights, which otherwise serve only decoding's few rows), and the greedy
  continuation of one prompt compared with fp32's (the share of its first tokens that agree).
- `--reference llama.cpp` adds the same GGUF file run by llama-cpp-python (a bench-only extra, built from
  source; see README) with the same prompts, when it is installed.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from ..errors import SettingsError
from .stream import _score, peak_rss_mb, read_body, run_json, token_ids

DEFAULT_FORMATS = ("fp32", "fp16w", "int8", "bf16", "int4")
SPEEDS = ("prefill_tok_s", "decode_b1_tok_s", "decode_b8_tok_s")
PROMPT = "Tell the story of a traveller who builds a machine to visit the far future, in the order it happens."


def _decode_rate(engine: Any, ids: list[int], batch: int, new_tokens: int) -> tuple[float, list[int]]:
    """tok/s of decoding `batch` forks of a document prompt together; also the first fork's tokens."""
    text = engine.tokenizer.decode(ids[:192])
    forks = [engine.prompt_fork("You read books.", f"{text}\n\n{PROMPT} ({i})", new_tokens) for i in range(batch)]
    engine.decode([engine.prompt_fork("You read books.", "Hi.", 4)])  # warm-up: not timed
    before = engine.decoded_tokens
    t = time.perf_counter()
    texts = engine.decode(forks, width=batch)
    dt = time.perf_counter() - t
    return (engine.decoded_tokens - before) / dt, engine.encode(texts[0])


def _perplexity(lm: Any, ids: list[int], spec: dict) -> float:
    """Sink-cache perplexity. int4 is scored through its int4 weights (which decoding uses; prefill takes the
    bf16 ones)."""
    from ..backend import int4

    small, int4.SMALL_ROWS = int4.SMALL_ROWS, (10**9 if lm.weights == "int4" else int4.SMALL_ROWS)
    try:
        return _score(lm.model, ids, "sink", spec["sinks"], spec["window"], spec["chunk"], 10**9)["ppl"]
    finally:
        int4.SMALL_ROWS = small


def measure(spec: dict) -> dict:
    """One format, in this process: load, prefill, decode at batch 1 and 8, perplexity."""
    import torch

    from ..backend.local import Engine
    from ..backend.model import load

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    t = time.perf_counter()
    lm = load(spec["model"], dtype=spec["format"])
    load_s = time.perf_counter() - t
    ids, _ = token_ids(lm.tokenizer, read_body(spec["path"]), spec["tokens"])
    engine = Engine(lm)
    out: dict[str, Any] = {"format": lm.weights, "load_s": round(load_s, 2)}
    out["ppl_sink"] = _perplexity(lm, ids, spec)
    pre = _score(lm.model, ids, "prefill", spec["sinks"], spec["window"], spec["chunk"], 10**9, spec["prefill_chunk"])
    out["prefill_tok_s"] = pre["tok_per_s"]
    for b in (1, 8):
        rate, first = _decode_rate(engine, ids, b, spec["new_tokens"])
        out[f"decode_b{b}_tok_s"] = round(rate, 1)
        if b == 1:
            out["greedy_ids"] = first
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def _agreement(a: list[int], b: list[int]) -> float:
    """Share of the first tokens of two greedy continuations that agree, up to the first difference."""
    n = min(len(a), len(b))
    same = next((i for i in range(n) if a[i] != b[i]), n)
    return round(same / n, 2) if n else 0.0


def run(path: str, formats: tuple[str, ...] = DEFAULT_FORMATS, tokens: int = 4096, window: int = 508,
        sinks: int = 4, chunk: int = 64, prefill_chunk: int = 256, new_tokens: int = 48, model: str | None = None,
        threads: int | None = None, reference: str | None = None, rounds: int = 1) -> dict:
    """Measure every format in `formats` (each in its own subprocess, `rounds` times interleaved, the best
    round of each speed kept) and, if asked, the llama.cpp reference."""
    from ..backend.model import FORMATS

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise SettingsError(f"unknown format {bad} — use some of {', '.join(FORMATS)}")
    if reference not in (None, "llama.cpp"):
        raise SettingsError(f"unknown reference '{reference}' — use --reference llama.cpp")
    read_body(path)  # a missing or undecodable file fails here, before any subprocess
    if reference:
        from .llamacpp import check_reference

        check_reference()
    base = {"path": str(path), "tokens": tokens, "window": window, "sinks": sinks, "chunk": chunk,
            "prefill_chunk": prefill_chunk, "new_tokens": new_tokens, "model": model, "threads": threads}
    if rounds < 1:
        raise SettingsError(f"--rounds {rounds}: use at least 1")
    res: dict[str, Any] = {"file": str(path), "tokens": tokens, "window": window, "sinks": sinks,
                           "rounds": rounds, "load_avg_start": os.getloadavg()[0], "rows": []}
    runs: dict[str, list[dict]] = {fmt: [] for fmt in formats}
    for _ in range(rounds):
        for fmt in formats:
            runs[fmt].append(run_json(["-m", "docstream.bench.engine", json.dumps({**base, "format": fmt})], fmt))
    res["rows"] = [_best(rows) for rows in runs.values()]
    if reference:
        from .llamacpp import measure_reference

        res["rows"].append(measure_reference(base))
    ref = next((r for r in res["rows"] if r["format"] == "fp32"), None)
    ref_ids = ref.get("greedy_ids") if ref else None
    for r in res["rows"]:
        if ref is not None:
            r["prefill_vs_fp32"] = round(r["prefill_tok_s"] / ref["prefill_tok_s"], 2)
            r["decode_b1_vs_fp32"] = round(r["decode_b1_tok_s"] / ref["decode_b1_tok_s"], 2)
            if r.get("ppl_sink"):
                r["ppl_vs_fp32"] = round(r["ppl_sink"] / ref["ppl_sink"], 3)
            if r.get("greedy_ids") and ref_ids:
                r["greedy_agree"] = _agreement(r["greedy_ids"], ref_ids)
    for r in res["rows"]:
        r.pop("greedy_ids", None)
    res["load_avg_end"] = os.getloadavg()[0]
    return res


def _best(rows: list[dict]) -> dict:
    """One format's rounds as one row: the first round's figures with each speed at its best round."""
    out = dict(rows[0])
    for key in SPEEDS:
        out[key] = max(r[key] for r in rows)
    out["load_s"] = min(r["load_s"] for r in rows)
    return out


def format_report(res: dict) -> str:
    cols = [("format", "format", "{}"), ("prefill tok/s", "prefill_tok_s", "{:.0f}"),
            ("decode b1", "decode_b1_tok_s", "{:.1f}"), ("decode b8", "decode_b8_tok_s", "{:.1f}"),
            ("ppl (sink)", "ppl_sink", "{:.2f}"), ("ppl/fp32", "ppl_vs_fp32", "{:.3f}"),
            ("greedy=fp32", "greedy_agree", "{:.2f}"), ("peak RSS MiB", "peak_rss_mb", "{:.0f}"),
            ("load s", "load_s", "{:.1f}"), ("prefill/fp32", "prefill_vs_fp32", "{:.2f}"),
            ("decode b1/fp32", "decode_b1_vs_fp32", "{:.2f}")]
    best = f"; speeds: best of {res['rounds']} interleaved rounds" if res.get("rounds", 1) > 1 else ""
    lines = [f"{res['file']}: {res['tokens']} tokens, sink cache {res['sinks']} + {res['window']}; load average "
             f"{res['load_avg_start']:.1f} -> {res['load_avg_end']:.1f}{best}",
             "| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in res["rows"]:
        cells = [fmt.format(r[k]) if r.get(k) is not None else "–" for _, k, fmt in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # the body of one format's subprocess
    print(json.dumps(measure(json.loads(sys.argv[1]))))
