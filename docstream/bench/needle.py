"""Needle in a haystack (`docstream bench needle`): can each mode answer a question about one inserted sentence?

Design choices:
- Haystack: the `*.txt` files of a folder concatenated in sorted name order (blank line between files), or one
  file; CRLF folded to LF. It is tokenized ONCE with the engine's tokenizer (offsets kept) and repeated if it is
  shorter than the longest length. For a length of N tokens the haystack is cut at a token boundary to
  N - (needle tokens), so the document with its needle is ≈ N model tokens (the exact count is in each cell).
- The needle goes at the last sentence boundary at or before `depth`% of the cut haystack's characters
  (depth 0 = the very start, 100 = the very end); `insert_needle()` is a pure function and returns the needle's
  exact char span in the new text.
- Each (length, depth) text is written once to OUT/texts/<sha256[:16]>/<name>.txt: identical texts get the
  same path and, since docstream keys its index by content hash + settings, the same index — so a repeated run
  (or a run with other modes) never reads the same text twice. Every mode of a cell uses the same file.
- A cell = `docstream.open(path, model, window).ask(question, mode=mode)`. In `docstream` mode the read is
  timed separately (`read_seconds`, 0 when an index of the same text was reused).
- Scoring needs no judge: correct = every answer key word occurs in the answer (case-insensitive). Retrieval
  recall (docstream mode only) = a citation's char span overlaps the needle's span; `retrieved` says the same of
  the retrieved passages (before focusing), to tell retrieval misses from focusing misses.
- `jobs > 1` runs cells in spawned worker processes (see `pool.py`), docstream cells first and longest first.
  OUT/needle.json is rewritten after every finished cell (`complete: false` until the end), so a long run that
  is interrupted keeps its results; running it again reuses every finished read.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from ..errors import InputError, SettingsError
from .pool import Progress, cores, run_cells, threads_per_job

MODES = ("docstream", "stream", "truncate")
NEEDLE = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
QUESTION = "What is the best thing to do in San Francisco?"
ANSWER = ("sandwich", "Dolores Park")
LENGTHS = (4000, 16000, 32000)
DEPTHS = (0, 25, 50, 75, 100)
DEFAULT_HAYSTACK = "shared/corpus/niah_paul_graham_essays"

# A sentence ends with . ! or ? (and closing quotes/brackets), followed by space, a capital, an opening quote or
# the end of the text (the essays often lack the space after a full stop: "accelerating.We").
_BOUNDARY = re.compile(r"[.!?][\"'”’)\]]*(?=\s|[A-Z\"“]|$)")


def default_haystack() -> Path:
    import docstream

    return Path(docstream.__file__).resolve().parents[1].parent / DEFAULT_HAYSTACK


# ---------------------------------------------------------------------------------------------- haystack
def load_haystack(path: str | Path | None) -> tuple[str, str, list[str]]:
    """(text, name, files) of a folder of *.txt (sorted) or one file."""
    if path is None:
        p = default_haystack()
        if not p.exists():
            raise InputError(f"the default haystack {p} is not there — pass --haystack DIR_OR_FILE "
                             "(a folder of .txt files or one text file)")
    else:
        p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.txt"))
        if not files:
            raise InputError(f"{p} has no .txt files — pass a folder of .txt files or one text file")
    elif p.is_file():
        files = [p]
    else:
        raise InputError(f"{p}: no such file or folder — pass a folder of .txt files or one text file")
    parts = []
    for f in files:
        try:
            parts.append(f.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n").strip())
        except UnicodeDecodeError:
            raise InputError(f"{f}: not valid UTF-8 — convert it with `iconv -t utf-8`") from None
    text = "\n\n".join(t for t in parts if t)
    if not text:
        raise InputError(f"{p}: the haystack is empty")
    name = re.sub(r"[^A-Za-z0-9]+", " ", p.stem if p.is_file() else p.name).strip() or "haystack"
    return text, name, [str(f) for f in files]


def token_ends(tokenizer: Any, text: str) -> list[int]:
    """The char offset where each token of `text` ends (tokenized once, without special tokens)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ends, last = [], 0
        for _, e in enc["offset_mapping"]:
            last = max(last, e)  # byte-level pieces of one character share offsets; keep it monotone
            ends.append(last)
        return ends
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # slow tokenizer: decode prefixes
    return [len(tokenizer.decode(ids[:i + 1])) for i in range(len(ids))]


def sentence_boundaries(text: str) -> list[int]:
    """Char offsets where a sentence may start: 0, after every sentence end, and len(text)."""
    return sorted({0, len(text), *(m.end() for m in _BOUNDARY.finditer(text))})


def insert_needle(text: str, needle: str, depth: float) -> tuple[str, int, int]:
    """Insert `needle` at the last sentence boundary at or before `depth`% of `text`.

    Returns (new text, needle char start, needle char end); a space separates it from its neighbours."""
    if not 0 <= depth <= 100:
        raise SettingsError(f"depth {depth} is not a percentage — use depths from 0 to 100")
    target = round(len(text) * depth / 100)
    pos = max(b for b in sentence_boundaries(text) if b <= target)
    before, after = text[:pos], text[pos:]
    lead = " " if before and not before[-1].isspace() else ""
    trail = " " if after and not after[0].isspace() else ""
    start = len(before) + len(lead)
    return before + lead + needle + trail + after, start, start + len(needle)


def build_texts(haystack: str, tokenizer: Any, lengths: list[int], depths: list[float], needle: str,
                count: Any) -> list[dict[str, Any]]:
    """One entry per (length, depth): text, needle span and token count. Tokenizes the haystack once."""
    need = count(" " + needle)
    too_short = [n for n in lengths if n <= need + 16]
    if too_short:
        raise SettingsError(f"length {too_short[0]} is too short for a needle of {need} tokens — "
                            f"use lengths above {need + 16}")
    ends = token_ends(tokenizer, haystack)
    if len(ends) < max(lengths):  # repeat a short haystack, as the standard test does
        reps = max(lengths) // max(len(ends), 1) + 1
        haystack = "\n\n".join([haystack] * (reps + 1))
        ends = token_ends(tokenizer, haystack)
    out = []
    for n in lengths:
        cut = haystack[:ends[n - need - 1]]
        for d in depths:
            text, s, e = insert_needle(cut, needle, d)
            out.append({"length": n, "depth": d, "text": text, "needle_start": s, "needle_end": e,
                        "tokens": count(text)})
    return out


def write_text(out_dir: Path, name: str, text: str) -> Path:
    """OUT/texts/<sha256[:16]>/<name>.txt, written once (identical texts share a path and an index)."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    p = out_dir / "texts" / digest / f"{name}.txt"
    if not p.exists() or p.read_text(encoding="utf-8") != text:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as f:  # offsets must match the file exactly
            f.write(text)
        tmp.replace(p)
    return p


# ---------------------------------------------------------------------------------------------- one cell
def is_correct(answer: str, words: list[str] | tuple[str, ...]) -> bool:
    low = " ".join(answer.lower().split())
    return all(" ".join(w.lower().split()) in low for w in words)


def _overlaps(a: int, b: int, s: int, e: int) -> bool:
    return a < e and b > s


def run_cell(spec: dict) -> dict:
    """Answer the question about one text in one mode. Errors are returned, not raised."""
    import docstream

    t0 = time.perf_counter()
    res: dict[str, Any] = {"mode": spec["mode"], "length": spec["length"], "depth": spec["depth"]}
    try:
        doc = docstream.open(spec["path"], model=spec["model"], window=spec["window"])
        read_s, reused = 0.0, None
        if spec["mode"] == "docstream":
            reused = doc.is_read()
            t = time.perf_counter()
            doc.ensure_read()
            read_s = time.perf_counter() - t
        ans = doc.ask(spec["question"], mode=spec["mode"])
        s, e = spec["needle_start"], spec["needle_end"]
        res.update(correct=is_correct(ans.answer, spec["answer_words"]), answer=ans.answer,
                   recall=(any(_overlaps(c.char_start, c.char_end, s, e) for c in ans.citations)
                           if spec["mode"] == "docstream" else None),
                   retrieved=(any(_overlaps(r["char_start"], r["char_end"], s, e) for r in ans.retrieved)
                              if spec["mode"] == "docstream" else None),
                   citations=[[c.char_start, c.char_end] for c in ans.citations],
                   read_seconds=round(read_s, 2), index_reused=reused,
                   ask_seconds=round(ans.timings.get("total_ms", 0) / 1000, 2))
    except Exception as exc:  # one failed cell must not lose a long run
        res.update(correct=False, recall=None, answer="", error=f"{exc.__class__.__name__}: {exc}")
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


# ---------------------------------------------------------------------------------------------- the grid
def _nonempty(values: Any, what: str) -> list[Any]:
    out = list(values)
    if not out:
        raise SettingsError(f"give at least one {what}")
    return out


def run(haystack: str | Path | None = None, lengths: list[int] = list(LENGTHS), depths: list[float] = list(DEPTHS),
        needle: str = NEEDLE, question: str = QUESTION, answer: list[str] | tuple[str, ...] = ANSWER,
        modes: list[str] | tuple[str, ...] = MODES, out: str | Path = "bench-out/needle", model: str | None = None,
        window: int = 2048, jobs: int = 1, progress: bool = True) -> dict:
    """Run the grid; writes OUT/needle.json and OUT/needle.png and returns the JSON dict."""
    from ..api import get_engine
    from ..backend.model import model_name

    lengths, depths, modes = _nonempty(lengths, "length"), _nonempty(depths, "depth"), _nonempty(modes, "mode")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SettingsError(f"unknown mode {bad[0]!r} — use some of {', '.join(MODES)}")
    depths = [int(d) if float(d).is_integer() else float(d) for d in depths]
    if any(not 0 <= d <= 100 for d in depths):
        raise SettingsError("depths are percentages — use values from 0 to 100")
    if jobs < 1:
        raise SettingsError("--jobs must be at least 1")
    words = [w.strip() for w in answer if w.strip()]
    if not words or not needle.strip() or not question.strip():
        raise SettingsError("the needle, the question and the answer key words must not be empty")
    t_start = time.perf_counter()
    text, name, files = load_haystack(haystack)
    engine = get_engine(model)
    t = time.perf_counter()
    texts = build_texts(text, engine.tokenizer, sorted(set(lengths)), sorted(set(depths)), needle, engine.count)
    build_s = time.perf_counter() - t
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = []
    for item in texts:
        path = write_text(out_dir, name, item["text"])
        for mode in modes:
            specs.append({"mode": mode, "length": item["length"], "depth": item["depth"], "path": str(path),
                          "tokens": item["tokens"], "needle_start": item["needle_start"],
                          "needle_end": item["needle_end"], "question": question, "answer_words": words,
                          "model": model, "window": window})
    cost = {"docstream": 0, "stream": 1, "truncate": 2}  # most expensive first: balances the workers
    specs.sort(key=lambda s: (cost[s["mode"]], -s["length"], s["depth"]))
    result: dict[str, Any] = {
        "model": model_name(model), "window": window, "haystack": str(haystack or default_haystack()),
        "haystack_files": len(files), "needle": needle, "question": question, "answer_words": words,
        "lengths": sorted(set(lengths)), "depths": sorted(set(depths)), "modes": list(modes), "jobs": jobs,
        "torch_threads_per_job": threads_per_job(jobs) if jobs > 1 else None, "cores": cores(),
        "build_seconds": round(build_s, 2), "load_avg_start": round(os.getloadavg()[0], 2), "complete": False,
        "cells": []}
    json_path = out_dir / "needle.json"
    bar = Progress(len(specs)) if progress else None

    def done(spec: dict, res: dict) -> None:
        res.update(tokens=spec["tokens"], needle_start=spec["needle_start"], needle_end=spec["needle_end"],
                   text=spec["path"])
        result["cells"].append(res)
        if bar:
            verdict = "error: " + res["error"] if "error" in res else ("correct" if res["correct"] else "wrong")
            if res.get("recall") is not None:
                verdict += ", cited" if res["recall"] else ", not cited"
            bar.line(f"{res['mode']} length {res['length']} depth {res['depth']}: {verdict}", res["seconds"])
        json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False))

    run_cells(run_cell, specs, jobs, done)
    order = {m: i for i, m in enumerate(modes)}
    result["cells"].sort(key=lambda c: (order[c["mode"]], c["length"], c["depth"]))
    result["summary"] = summarize_cells(result)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    result["complete"] = True
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    result["heatmap"] = str(heatmap(result, out_dir / "needle.png"))
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def summarize_cells(result: dict) -> dict:
    """Per mode: accuracy per length and overall; recall (docstream) overall and per length; errors."""
    out: dict[str, Any] = {}
    for mode in result["modes"]:
        cells = [c for c in result["cells"] if c["mode"] == mode]
        row: dict[str, Any] = {"accuracy": {}, "recall": None, "recall_by_length": {},
                               "errors": sum("error" in c for c in cells)}
        for n in result["lengths"]:
            cs = [c for c in cells if c["length"] == n]
            row["accuracy"][str(n)] = round(sum(c["correct"] for c in cs) / len(cs), 3) if cs else None
            rs = [c["recall"] for c in cs if c.get("recall") is not None]
            row["recall_by_length"][str(n)] = round(sum(rs) / len(rs), 3) if rs else None
        row["overall"] = round(sum(c["correct"] for c in cells) / len(cells), 3) if cells else None
        rs = [c["recall"] for c in cells if c.get("recall") is not None]
        row["recall"] = round(sum(rs) / len(rs), 3) if rs else None
        out[mode] = row
    return out


# ---------------------------------------------------------------------------------------------- output
def heatmap(result: dict, path: Path) -> Path:
    """depth (rows) × length (columns), one panel per mode: green correct, red wrong, grey missing/error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    lengths, depths, modes = result["lengths"], result["depths"], result["modes"]
    panel_w = max(3.2, 1.2 + 1.0 * len(lengths))
    fig, axes = plt.subplots(1, len(modes), figsize=(panel_w * len(modes), 1.8 + 0.45 * len(depths)), squeeze=False)
    cmap = ListedColormap(["#d9534f", "#5cb85c"]).with_extremes(bad="#bbbbbb")
    for ax, mode in zip(axes[0], modes):
        grid = np.full((len(depths), len(lengths)), np.nan)
        for c in result["cells"]:
            if c["mode"] == mode and "error" not in c:
                grid[depths.index(c["depth"]), lengths.index(c["length"])] = 1.0 if c["correct"] else 0.0
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        if mode == "docstream":
            for c in result["cells"]:
                if c["mode"] == mode and c.get("recall") is not None:
                    ax.text(lengths.index(c["length"]), depths.index(c["depth"]),
                            "cited" if c["recall"] else "not cited", ha="center", va="center", fontsize=7)
        acc = result.get("summary", {}).get(mode, {}).get("overall")
        ax.set_title(f"{mode}" + (f": {acc:.0%} correct" if acc is not None else ""), fontsize=10)
        ax.set_xticks(range(len(lengths)), [f"{n // 1000}k" if n >= 1000 else str(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:g}%" for d in depths])
        ax.set_xticks([x - 0.5 for x in range(1, len(lengths))], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, len(depths))], minor=True)
        ax.grid(which="minor", color="white", linewidth=2)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("length (tokens)")
        ax.set_ylabel("needle depth")
    fig.suptitle(f"needle in a haystack — {Path(result['model']).name}, window {result['window']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(result: dict) -> str:
    lengths = result["lengths"]
    head = f"{'mode':<10}" + "".join(f"{n:>8}" for n in lengths) + f"{'all':>8}{'recall':>8}"
    lines = [f"needle: {result['model']}, window {result['window']}, {len(result['cells'])} cells, "
             f"{result.get('seconds', 0):.0f} s (jobs {result['jobs']}); accuracy per length in tokens",
             head]
    for mode, row in result["summary"].items():
        cells = "".join(f"{'-' if row['accuracy'][str(n)] is None else format(row['accuracy'][str(n)], '.0%'):>8}"
                        for n in lengths)
        rec = "-" if row["recall"] is None else format(row["recall"], ".0%")
        lines.append(f"{mode:<10}{cells}{format(row['overall'] or 0, '.0%'):>8}{rec:>8}"
                     + (f"  ({row['errors']} errors)" if row["errors"] else ""))
    lines.append(f"results: {Path(result['heatmap']).parent / 'needle.json'}; heatmap: {result['heatmap']}")
    return "\n".join(lines)


def print_report(result: dict, as_json: bool = False) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False) if as_json else format_table(result))
