"""The llama.cpp reference row of `docstream bench engine --reference llama.cpp`.

Design choices:
- The same GGUF file the embedded model is converted from (SmolLM2-135M-Instruct, Q4_1), run by
  llama-cpp-python (`pip install llama-cpp-python`: it compiles llama.cpp from source; never a docstream
  dependency), in its own subprocess like every other row, with one thread per core.
- prefill: the same document tokens evaluated in `prefill_chunk`-token batches (llama.cpp's own tokenizer on
  the same text); decode: greedy tokens after a prompt at batch 1. llama.cpp has no sink cache, so the
  perplexity column stays empty rather than compare a full-context figure with sink-cache ones.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from ..errors import SettingsError
from .engine import PROMPT
from .stream import peak_rss_mb, read_body, run_json

MISSING = ("llama-cpp-python cannot be imported — `pip install 'docstream[llamacpp]'` to add the reference row "
           "(it compiles llama.cpp from source: 76 min here, on 2 busy cores)")


def _measure(spec: dict) -> dict:
    from llama_cpp import Llama

    from ..backend.model import DEFAULT_MODEL, _gguf_path

    gguf = _gguf_path(DEFAULT_MODEL)
    threads = spec.get("threads") or os.cpu_count() or 1
    t = time.perf_counter()
    llm = Llama(model_path=str(gguf), n_ctx=spec["tokens"] + 256, n_batch=spec["prefill_chunk"],
                n_threads=threads, n_threads_batch=threads, verbose=False)
    load_s = time.perf_counter() - t
    ids = llm.tokenize(read_body(spec["path"]).encode(), add_bos=False)[: spec["tokens"]]
    t = time.perf_counter()
    llm.eval(ids)
    prefill = len(ids) / (time.perf_counter() - t)
    llm.reset()
    prompt = llm.tokenize(llm.detokenize(ids[:192]) + b"\n\n" + PROMPT.encode(), add_bos=False)
    n, t = 0, 0.0
    for tok in llm.generate(prompt, temp=0.0):
        if n == 0:
            t = time.perf_counter()  # the first token comes after the prompt's prefill
        n += 1
        if n > spec["new_tokens"] or tok == llm.token_eos():
            break
    decode = (n - 1) / (time.perf_counter() - t)
    return {"format": "llama.cpp Q4_1", "load_s": round(load_s, 2), "prefill_tok_s": round(prefill, 1),
            "decode_b1_tok_s": round(decode, 1), "decode_b8_tok_s": None, "ppl_sink": None,
            "peak_rss_mb": round(peak_rss_mb(), 1), "threads": threads}


def check_reference() -> None:
    """SettingsError now (before any row is measured) if llama-cpp-python cannot be imported."""
    proc = subprocess.run([sys.executable, "-c", "import llama_cpp"], capture_output=True, text=True)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise SettingsError(f"{MISSING} ({why})")


def measure_reference(base: dict) -> dict:
    """The reference row, measured in a subprocess (call `check_reference` first)."""
    try:
        return run_json(["-m", "docstream.bench.llamacpp", json.dumps(base)], "llama.cpp")
    except RuntimeError as e:  # seen here: llama-cpp-python 0.3.36 built on this VM segfaults in its first decode
        last = str(e).strip().splitlines()[-1]
        raise SettingsError(f"the llama.cpp reference failed ({last[:200]}) — run without --reference, or rebuild "
                            "llama-cpp-python for this CPU") from None


if __name__ == "__main__":
    out: dict[str, Any] = _measure(json.loads(sys.argv[1]))
    print(json.dumps(out))
