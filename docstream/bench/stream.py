"""Perplexity and throughput of streaming through a bounded KV cache (`docstream bench stream FILE`).

Design choices:
- The same first `tokens` tokens of FILE (UTF-8, BOM stripped, Gutenberg header/licence cut off when present) are
  scored under several configurations:
    full    - full attention (a plain DynamicCache), only when the tokens fit the model context;
    sink    - SinkCache(sinks, window): the StreamingLLM attention-sink cache;
    window  - the same cache budget with no sinks (sinks=0, window=sinks+window): a plain sliding window;
    prefill - the sink cache fed `prefill_chunk` tokens per forward with no logits (what the reader does per
              chunk of a document): speed only;
    loop    - the sink cache fed one token per forward with logits, as in the reference StreamingLLM evaluation,
              on a small slice (`loop_tokens`): speed only. `chunked_vs_loop_speed` = prefill tok/s / loop tok/s.
- Bounded caches are fed in chunks of `chunk` tokens (default 64). Every token of a chunk is predicted with the
  cache as context; eviction happens before the chunk, so the first token of a chunk sees sinks + window - chunk
  earlier tokens and the last one sees sinks + window - 1. Smaller chunks mean more context per prediction (closer
  to the token-by-token reference) but slower prefill.
- NLL is accumulated in fp32 per `segment`-token segment (by target index), so long runs show whether ppl stays
  flat; nothing grows with the stream length except the token ids.
- Each configuration runs in its own subprocess by default (`isolate=True`), so its peak RSS (ru_maxrss) is
  honest: it includes torch + the model + that configuration's cache and activations, nothing else.
- If FILE is shorter than `tokens`, its body is repeated (reported as `cycled`); with a bounded cache the model
  cannot see the repetition, so ppl per segment stays meaningful.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import InputError, SettingsError

CONFIGS = ("full", "sink", "window", "prefill", "loop")


# ---------------------------------------------------------------------------------------------- text
def read_body(path: str | Path) -> str:
    """The text of `path` (UTF-8, no BOM); for a Project Gutenberg file only the book body."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{p}: no such file — pass the path of a UTF-8 text file") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not valid UTF-8 — convert it with `iconv -t utf-8`") from None
    start, end = text.find("*** START OF"), text.find("*** END OF")
    if start >= 0:
        nl = text.find("\n", start)
        text = text[nl + 1:end if end > start else None]
    return text.strip()


def token_ids(tokenizer: Any, text: str, n: int) -> tuple[list[int], bool]:
    """The first n token ids of text (repeated if too short) and whether it was repeated."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise InputError("the file has no text — pass a non-empty document")
    cycled = len(ids) < n
    while len(ids) < n:
        ids = ids + tokenizer.encode("\n\n" + text, add_special_tokens=False)
    return ids[:n], cycled


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---------------------------------------------------------------------------------------------- scoring
class _NLL:
    """Sum of NLL per segment of target indices."""

    def __init__(self, segment: int):
        self.segment, self.sums, self.counts = segment, {}, {}

    def add(self, logits: Any, targets: Any, first_target: int) -> None:
        import torch.nn.functional as F

        nll = F.cross_entropy(logits.float(), targets, reduction="none")  # (n,)
        idx = first_target
        while idx < first_target + len(targets):
            seg = idx // self.segment
            stop = min((seg + 1) * self.segment, first_target + len(targets))
            part = nll[idx - first_target:stop - first_target]
            self.sums[seg] = self.sums.get(seg, 0.0) + float(part.sum())
            self.counts[seg] = self.counts.get(seg, 0) + len(part)
            idx = stop

    def ppl(self) -> float:
        return math.exp(sum(self.sums.values()) / max(sum(self.counts.values()), 1))

    def segments(self) -> list[float]:
        return [round(math.exp(self.sums[s] / self.counts[s]), 3) for s in sorted(self.sums)]


def _score(model: Any, ids: list[int], kind: str, sinks: int, window: int, chunk: int, segment: int,
           prefill_chunk: int = 256) -> dict:
    """Run one configuration in this process; returns ppl, tok/s and sizes."""
    import torch
    from transformers import DynamicCache

    from ..backend.compat import cache_kwargs
    from ..backend.sink_cache import SinkCache

    x = torch.tensor([ids])  # (1, N)
    N = x.shape[1]
    nll = _NLL(segment)
    if kind == "full":
        cache, step = DynamicCache(config=model.config), 512
    elif kind in ("sink", "loop", "prefill"):
        step = min(prefill_chunk, window) if kind == "prefill" else chunk
        cache = SinkCache(model, sinks=sinks, window=window, max_pinned=0)
    elif kind == "window":
        cache, step = SinkCache(model, sinks=0, window=sinks + window, max_pinned=0), chunk
    else:
        raise SettingsError(f"unknown configuration '{kind}' — use one of {', '.join(CONFIGS)}")
    step = 1 if kind == "loop" else step
    model(input_ids=x[:, :16], use_cache=False)  # warm-up (allocator, kernels): not timed
    t0 = time.perf_counter()
    kv_max = 0
    with torch.inference_mode():
        for s in range(0, N, step):
            e = min(s + step, N)
            if kind == "full":
                logits = model(input_ids=x[:, s:e], use_cache=True, **cache_kwargs(model, cache)).logits[0]  # (n, V)
            elif kind == "prefill":
                cache.feed(model, x[:, s:e], logits=None)
            else:
                logits = cache.feed(model, x[:, s:e], logits="all")[0]  # (n, V)
            kv_max = max(kv_max, sum(la.keys.numel() * la.keys.element_size() * 2 for la in cache.layers))
            if kind in ("loop", "prefill"):
                continue
            n_t = min(e, N - 1) - s  # targets ids[s+1 : e+1], none past the end
            if n_t > 0:
                nll.add(logits[:n_t], x[0, s + 1:s + 1 + n_t], s + 1)
    dt = time.perf_counter() - t0
    out = {"config": kind, "tokens": N, "seconds": round(dt, 2), "tok_per_s": round(N / dt, 1),
           "kv_bytes_max": kv_max, "cache_tokens_max": (N if kind == "full" else
                                                        (sinks + window))}
    if kind == "prefill":
        out["chunk"] = step
    if kind not in ("loop", "prefill"):
        out["ppl"] = round(nll.ppl(), 3)
        out["ppl_segments"] = nll.segments()
    return out


def _one(spec: dict) -> dict:
    """Load the model and run one configuration (the body of a subprocess)."""
    import torch

    from ..backend.model import load

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    lm = load(spec["model"], dtype=spec["dtype"])
    ids = spec["ids"] if "ids" in spec else None
    if ids is None:
        ids, _ = token_ids(lm.tokenizer, read_body(spec["path"]), spec["tokens"])
    res = _score(lm.model, ids[: spec["n"]], spec["kind"], spec["sinks"], spec["window"], spec["chunk"],
                 spec["segment"], spec.get("prefill_chunk", 256))
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return res


def run_json(args: list[str], what: str) -> dict:
    """Run `python ARGS` (one benchmark cell in a process of its own) and return the JSON object its last stdout
    line holds; RuntimeError with the tail of its stderr if it fails."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess for '{what}' failed (exit code {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spawn(spec: dict) -> dict:
    return run_json(["-m", "docstream.bench.stream", "--one", json.dumps(spec)], spec["kind"])


# ---------------------------------------------------------------------------------------------- public API
def run(path: str | Path, tokens: int = 4096, window: int = 508, sinks: int = 4, chunk: int = 64,
        model: str | None = None, dtype: str = "auto", segment: int = 10000, loop_tokens: int = 512,
        prefill_chunk: int = 256,
        configs: tuple[str, ...] = CONFIGS, isolate: bool = True, threads: int | None = None) -> dict:
    """Score the first `tokens` tokens of `path` under each configuration; see the module docstring."""
    from ..backend.model import load

    if tokens < 2 or chunk < 1 or segment < 1:
        raise SettingsError("use --tokens >= 2, --chunk >= 1 and --segment >= 1")
    if chunk > window:
        raise SettingsError(f"--chunk ({chunk}) must not exceed --window ({window})")
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        raise SettingsError(f"unknown configuration {bad} — use some of {', '.join(CONFIGS)}")
    import torch

    if threads:
        torch.set_num_threads(threads)
    lm = load(model, dtype=dtype)
    text = read_body(path)
    ids, cycled = token_ids(lm.tokenizer, text, tokens)
    fits = tokens <= lm.context_length
    result: dict[str, Any] = {"file": str(path), "model": lm.name, "dtype": str(lm.dtype).replace("torch.", ""),
                              "tokens": tokens, "sinks": sinks, "window": window, "chunk": chunk,
                              "segment": segment, "cycled": cycled, "context": lm.context_length,
                              "torch_threads": torch.get_num_threads(), "load_avg_start": os.getloadavg()[0], "runs": {}}
    base = {"path": str(path), "tokens": tokens, "model": model, "dtype": dtype, "sinks": sinks,
            "window": window, "chunk": chunk, "segment": segment, "threads": threads,
            "prefill_chunk": prefill_chunk}
    for kind in configs:
        if kind == "full" and not fits:
            continue
        n = min(loop_tokens, tokens) if kind == "loop" else tokens
        spec = {**base, "kind": kind, "n": n}
        if isolate:
            res = _spawn(spec)
        else:
            res = _score(lm.model, ids[:n], kind, sinks, window, chunk, segment, prefill_chunk)
            res["peak_rss_mb"] = round(peak_rss_mb(), 1)
        result["runs"][kind] = res
    r = result["runs"]
    if "full" in r:
        for k in ("sink", "window"):
            if k in r:
                result[f"{k}_vs_full"] = round(r[k]["ppl"] / r["full"]["ppl"], 3)
    if "loop" in r and "prefill" in r:
        result["chunked_vs_loop_speed"] = round(r["prefill"]["tok_per_s"] / r["loop"]["tok_per_s"], 1)
    result["load_avg_end"] = os.getloadavg()[0]
    return result


def format_report(res: dict) -> str:
    lines = [f"{res['file']}  ({res['tokens']} tokens{', cycled' if res['cycled'] else ''}; model {res['model']} "
             f"{res['dtype']}; sinks {res['sinks']} + window {res['window']}; chunk {res['chunk']})",
             f"(torch threads {res['torch_threads']}; load average {res['load_avg_start']:.1f} -> "
             f"{res.get('load_avg_end', 0):.1f})",
             f"{'config':<8} {'ppl':>8} {'tok/s':>8} {'KV MiB':>8} {'peak RSS MiB':>13} {'tokens':>8}"]
    for k, r in res["runs"].items():
        ppl = f"{r['ppl']:.3f}" if "ppl" in r else "-"
        lines.append(f"{k:<8} {ppl:>8} {r['tok_per_s']:>8.1f} {r['kv_bytes_max'] / 2**20:>8.1f} "
                     f"{r['peak_rss_mb']:>13.1f} {r['tokens']:>8}")
    for key, label in (("sink_vs_full", "sink / full ppl"), ("window_vs_full", "window-only / full ppl"),
                       ("chunked_vs_loop_speed", "chunked prefill / token-by-token speed")):
        if key in res:
            lines.append(f"{label}: {res[key]}")
    for k, r in res["runs"].items():
        if len(r.get("ppl_segments", [])) > 1:
            lines.append(f"{k} ppl per {res['segment']} tokens: " + " ".join(f"{p:.2f}" for p in r["ppl_segments"]))
    return "\n".join(lines)


def print_report(res: dict, as_json: bool = False) -> None:
    print(json.dumps(res, indent=2) if as_json else format_report(res))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m docstream.bench.stream", description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--window", type=int, default=508)
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--segment", type=int, default=10000)
    ap.add_argument("--loop-tokens", type=int, default=512)
    ap.add_argument("--prefill-chunk", type=int, default=256)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    ap.add_argument("--model", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-isolate", action="store_true", help="run every configuration in this process")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(_one(json.loads(a.one))))
        return 0
    if not a.file:
        ap.error("FILE is required")
    res = run(a.file, tokens=a.tokens, window=a.window, sinks=a.sinks, chunk=a.chunk, model=a.model, dtype=a.dtype,
              segment=a.segment, loop_tokens=a.loop_tokens, prefill_chunk=a.prefill_chunk,
              configs=tuple(a.configs.split(",")),
              isolate=not a.no_isolate, threads=a.threads)
    print_report(res, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
