"""Summary evaluation (`docstream bench summary`): SQuALITY plot summaries, three methods, ROUGE + proxies.

Design choices:
- Data: SQuALITY jsonl rows `{metadata, document, questions: [{question_text, question_number, responses:
  [{response_text}]}]}`; the references are the responses to question 1, "What is the plot of the story?"
  (4 per story). Each story is written to OUT/texts/<sha256[:16]>/<title>.txt (its title is its first line that
  is not a transcriber's credit; docstream uses the file name as the document title); docstream keys its
  index by content, so re-runs reuse reads.
- Methods, one model, one run, one target length (`--words`, default 120 = `--length medium`; the SQuALITY
  references average 418 words):
    docstream - `docstream.open(path).summary(level="book", words=N)`: read (notes, chapter summaries), then
                the book summary, parts in order (the stored one at the default 120 words = `medium`, or with
                `--fresh` one made now from the stored chapter lines and notes; grounded by the product itself);
    truncate  - the first window of the story in a bare sink cache, then `prompts/bench_summary.txt`;
    stream    - the whole story streamed through the same bare sink cache (StreamingLLM), then the same prompt.
    oracle    - the ceiling of picking the story's own sentences: greedily, the sentence (5-40 words, among
                the `ORACLE_POOL` sharing most words with the references) that raises ROUGE-L the most against
                the references, while the summary stays within the word target; in story order. It reads the
                references, so no user has it: it shows what extraction could score at this length at best.
  The two baselines mirror `answer._bare` (the `ask --mode stream|truncate` baselines) with a summary prompt
  asking for the whole plot in order, with the same word target, token cap and stop strings; their output is
  NOT passed through docstream's `grounded()` filter (that filter is part of the docstream method).
- Metrics: ROUGE-1/2/L F1 (`rouge-score`, use_stemmer=True) against each reference: max over references (the
  headline) and mean over references, then the mean over stories.
  Faithfulness proxy: share of the distinct name-like tokens of the summary (capitalised words that do not
  start a sentence, plus all numbers) that occur in the story (case-insensitive, as words). Coverage proxy:
  share of the story's 10 most frequent name-like tokens (numbers and a small stoplist excluded) that the
  summary mentions. A summary with no name-like token has faithfulness None (left out of the mean).
  Content (`summarize.content`, against the story): vacuous = share of the summary's sentences that talk about
  the text (a meta phrase: "narrative", "is described", …) or have grounding < 0.5; grounding = mean share of
  a sentence's content words (not stop words, not the story's names) found in the story.
- Equal length: docstream's summary is cut, story by story, to each baseline's word count and scored again
  (`equal_length`), since the baselines stop earlier and a longer summary gains ROUGE recall by length alone.
- `jobs > 1` runs (story, method) cells in spawned workers (see `pool.py`), docstream cells first.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import InputError, SettingsError
from ..summarize import content
from .pool import Progress, cores, run_cells, threads_per_job

METHODS = ("docstream", "truncate", "stream", "oracle")
ORACLE_POOL = 40  # candidate sentences of the oracle: those sharing the most distinct words with the references
DEFAULT_DATA = "shared/corpus/qa/squality/dev.jsonl"
METRICS = ("rouge1", "rouge2", "rougeL")

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’-]*")
_SENT_END = re.compile(r"[.!?…]")
_OPENERS = "\"“‘'([*_"
_ABBREV = {"mr", "mrs", "ms", "dr", "st", "mt", "jr", "sr", "lt", "capt", "col", "gen", "prof", "sgt", "rev",
           "vs", "no", "co", "inc", "ft"}
# Capitalised words that are not names even mid-sentence (titles, quotes, the pronoun I, honorifics).
STOPLIST = set("""a an and are as at be but by do for from had has have he her here hers him his how i if in is it
its me my no not of oh ok okay on or our she so than that the their them then there these they this those to
too up us was we well were what when where which who why will with yes yet you your mr mrs ms dr miss sir st
""".split())
# Only for the coverage proxy: capitalised but not characters.
NOT_CHARACTERS = set("""monday tuesday wednesday thursday friday saturday sunday january february march april may
june july august september october november december god lord sir madam""".split())


def default_data() -> Path:
    import docstream

    return Path(docstream.__file__).resolve().parents[1].parent / DEFAULT_DATA


# ---------------------------------------------------------------------------------------------- data
_CREDIT = re.compile(r"^(?:produced by|distributed proofreading|e-?text prepared|transcriber|the project gutenberg|"
                     r"\*{3}|\[|https?:)", re.I)


def _title(text: str) -> str:
    """The story's first line that is not a transcriber's credit ("Produced by ...")."""
    for line in text.splitlines()[:40]:
        if line.strip() and not _CREDIT.match(line.strip()):
            return " ".join(line.split())
    return "story"


def _filename(title: str) -> str:
    name = re.sub(r"[^A-Za-z0-9 ,;'-]+", " ", title)
    return " ".join(name.split())[:80].strip(" .") or "story"


def load_stories(path: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """[{id, title, text, question, references}] from a SQuALITY jsonl (the plot question of each story)."""
    p = Path(path) if path is not None else default_data()
    if not p.exists():
        hint = " (the default SQuALITY dev set)" if path is None else ""
        raise InputError(f"{p}{hint} is not there — pass --data PATH to a SQuALITY-style .jsonl file")
    stories = []
    with p.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                qs = row["questions"]
                q = next((q for q in qs if q.get("question_number") == 1 or "plot" in q["question_text"].lower()),
                         None)
                if q is None:
                    raise KeyError("a plot question (question_number 1)")
                refs = [r["response_text"] for r in q["responses"] if r.get("response_text", "").strip()]
                text = row["document"]
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f"{p}, line {i}: not a SQuALITY row ({e.__class__.__name__}: {e}) — each line needs "
                                 "document and questions[].responses[].response_text") from None
            if not refs or not text.strip():
                raise InputError(f"{p}, line {i}: no story text or no reference summaries")
            meta = row.get("metadata") or {}
            stories.append({"id": str(meta.get("passage_id") or meta.get("uid") or i), "title": _title(text),
                            "text": text, "question": q["question_text"], "references": refs})
            if limit is not None and len(stories) >= limit:
                break
    if not stories:
        raise InputError(f"{p} has no stories")
    return stories


def write_story(out_dir: Path, story: dict) -> Path:
    digest = hashlib.sha256(story["text"].encode("utf-8")).hexdigest()[:16]
    p = out_dir / "texts" / digest / f"{_filename(story['title'])}.txt"
    if not p.exists() or p.read_text(encoding="utf-8") != story["text"]:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as f:
            f.write(story["text"])
        tmp.replace(p)
    return p


# ---------------------------------------------------------------------------------------------- metrics
def words(text: str) -> list[tuple[str, bool]]:
    """(word, starts_a_sentence) for every word; a possessive 's and trailing apostrophes/hyphens dropped.

    A word starts a sentence when it is the first word, follows . ! ? … (not after Mr./Dr./…), follows a blank
    line, or directly follows an opening quote or bracket."""
    out: list[tuple[str, bool]] = []
    prev_end, prev = 0, None
    for m in _WORD.finditer(text):
        w = re.sub(r"['’]s$", "", m.group()).rstrip("'’-")
        gap = text[prev_end:m.start()]
        if prev is None or re.search(r"\n\s*\n", gap) or (gap and gap[-1] in _OPENERS):
            initial = True
        elif _SENT_END.search(gap):
            initial = not (gap.strip() == "." and prev.lower() in _ABBREV)
        else:
            initial = False
        if w:
            out.append((w, initial))
        prev_end, prev = m.end(), w or m.group()
    return out


def name_tokens(text: str) -> list[str]:
    """Capitalised words that do not start a sentence (2+ letters, not in STOPLIST), and all numbers, in order."""
    return [w for w, initial in words(text)
            if w[0].isdigit() or (not initial and w[0].isupper() and len(w) > 1 and w.lower() not in STOPLIST)]


def _vocab(text: str) -> set[str]:
    return {w.lower() for w, _ in words(text)}


def faithfulness(summary: str, story: str) -> tuple[float | None, list[str]]:
    """(share of the summary's distinct names/numbers found in the story, the ones not found)."""
    names = list(dict.fromkeys(name_tokens(summary)))
    if not names:
        return None, []
    vocab = _vocab(story)
    missing = [n for n in names if n.lower() not in vocab
               and not all(p in vocab for p in n.lower().split("-") if p)]
    return round(1 - len(missing) / len(names), 4), missing


def top_names(story: str, k: int = 10) -> list[str]:
    """The story's k most frequent name-like tokens (numbers and NOT_CHARACTERS left out)."""
    counts = Counter(n for n in name_tokens(story) if not n[0].isdigit() and n.lower() not in NOT_CHARACTERS)
    return [n for n, _ in counts.most_common(k)]


def coverage(summary: str, story: str, k: int = 10, names: list[str] | None = None) -> tuple[float | None, list[str]]:
    """(share of the story's top-k names the summary mentions, the ones it mentions)."""
    names = top_names(story, k) if names is None else names
    if not names:
        return None, []
    vocab = _vocab(summary)
    hit = [n for n in names if n.lower() in vocab]
    return round(len(hit) / len(names), 4), hit


def scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)


def rouge(summary: str, references: list[str], sc: Any = None) -> dict[str, float]:
    """F1 per metric: max over references (`rouge1`, …) and mean over references (`rouge1_mean`, …)."""
    sc = sc or scorer()
    per = [sc.score(ref, summary) for ref in references]  # score(target, prediction)
    out: dict[str, float] = {}
    for k in METRICS:
        f = [p[k].fmeasure for p in per]
        out[k] = round(max(f), 4)
        out[f"{k}_mean"] = round(sum(f) / len(f), 4)
    return out


def aggregate(rows: list[dict], methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per method: the mean of every metric over its stories (None values left out) and the row count."""
    keys = [*METRICS, *(f"{k}_mean" for k in METRICS), "faithfulness", "coverage", "vacuous", "grounding", "words",
            "seconds"]
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        rs = [r for r in rows if r["method"] == m and "error" not in r]
        agg: dict[str, Any] = {"stories": len(rs), "errors": sum(1 for r in rows if r["method"] == m and "error" in r)}
        for k in keys:
            vals = [r[k] for r in rs if r.get(k) is not None]
            agg[k] = round(sum(vals) / len(vals), 4) if vals else None
        out[m] = agg
    return out


def equal_length(rows: list[dict], items: list[dict], sc: Any = None) -> dict[str, dict[str, Any]]:
    """Per baseline: docstream's summary cut, story by story, to the baseline's word count (its first words),
    and both scored: R-L (max over references) and R-L mean, averaged over the stories both summarised. A
    longer summary wins ROUGE recall by length alone; this takes length out."""
    by = {(r["story"], r["method"]): r for r in rows if "error" not in r}
    out: dict[str, dict[str, Any]] = {}
    for base in sorted({m for _, m in by} - {"docstream"}):
        pairs = [(by[(i, "docstream")], r) for (i, m), r in by.items() if m == base and (i, "docstream") in by]
        if not pairs:
            continue
        sums: Counter[str] = Counter()
        for ours, theirs in pairs:
            n = len(theirs["summary"].split())
            cut = rouge(" ".join(ours["summary"].split()[:n]), items[ours["story"]]["references"], sc)
            sums.update({"docstream_rougeL": cut["rougeL"], "docstream_rougeL_mean": cut["rougeL_mean"],
                         "rougeL": theirs["rougeL"], "rougeL_mean": theirs["rougeL_mean"], "words": n})
        out[base] = {"stories": len(pairs), **{k: round(v / len(pairs), 4) for k, v in sums.items()}}
    return out


# ---------------------------------------------------------------------------------------------- methods
def bare_summary(doc: Any, mode: str, words: int) -> str:
    """The baselines: the story's first window (`truncate`) or the whole story (`stream`) in a bare sink
    cache, then the summary prompt; as `answer._bare`, with the book summary's token cap and stop strings."""
    from .. import prompts
    from ..summarize.reduce import STOP, _tokens_for_words

    engine, s, src = doc.engine, doc.settings, doc.source
    max_new = _tokens_for_words(words)
    stream = engine.stream(sinks=s.sinks, window=s.window, max_pinned=s.max_pinned)
    stream.start(prompts.get("system").render(), prompts.get("read_user").render(title=doc.title))
    body = src.text[src.body_start:src.body_end]
    prompt = prompts.get("bench_summary").render(words=words)
    if mode == "truncate":
        room = s.window - engine.count(prompt) - max_new - 8
        stream.feed(engine.tokenizer.decode(engine.encode(body)[:room]))
    elif mode == "stream":
        step = s.chunk_tokens * 4
        for i in range(0, len(body), step):
            stream.feed(body[i:i + step])
    else:
        raise SettingsError(f"unknown baseline {mode!r}")
    return " ".join(stream.aside(prompt, max_new, stop=STOP).split())


def oracle_summary(text: str, references: list[str], words: int) -> str:
    """The story's own sentences picked greedily for ROUGE-L against `references` (max over them), about `words`
    words, in story order."""
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    sents = list(dict.fromkeys(" ".join(x.split()) for x in content.split_sentences(text)
                               if 5 <= len(x.split()) <= 40))
    ref_words = {w.lower() for r in references for w in _WORD.findall(r)}
    pool = sorted(sents, key=lambda x: -len({w.lower() for w in _WORD.findall(x)} & ref_words))[:ORACLE_POOL]

    def score(picked: list[str]) -> float:  # as shown: in story order
        shown = " ".join(sorted(picked, key=sents.index))
        return max(sc.score(r, shown)["rougeL"].fmeasure for r in references)

    picked: list[str] = []
    while fits := [x for x in pool if sum(len(y.split()) for y in [*picked, x]) <= words]:
        best = max(fits, key=lambda x: score([*picked, x]))
        picked.append(best)
        pool.remove(best)
    return " ".join(sorted(picked, key=sents.index))


def run_cell(spec: dict) -> dict:
    """One story, one method. Errors are returned, not raised."""
    import docstream

    t0 = time.perf_counter()
    res: dict[str, Any] = {"story": spec["story"], "method": spec["method"]}
    try:
        if spec["method"] == "oracle":  # no model: the story's sentences against the references
            res["summary"] = oracle_summary(Path(spec["path"]).read_text(encoding="utf-8"), spec["references"],
                                            spec["words"])
            res["seconds"] = round(time.perf_counter() - t0, 2)
            return res
        doc = docstream.open(spec["path"], model=spec["model"], window=spec["window"])
        if spec["method"] == "docstream":
            res["index_reused"] = doc.is_read()
            t = time.perf_counter()
            doc.ensure_read()
            res["read_seconds"] = round(time.perf_counter() - t, 2)
            text = doc.summary(level="book", words=spec["words"], fresh=spec.get("fresh", False))
        else:
            text = bare_summary(doc, spec["method"], spec["words"])
        res["summary"] = " ".join(str(text).split())
    except Exception as exc:  # one failed cell must not lose a long run
        res.update(summary="", error=f"{exc.__class__.__name__}: {exc}")
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


# ---------------------------------------------------------------------------------------------- the run
def run(data: str | Path | None = None, stories: int | None = None, methods: list[str] | tuple[str, ...] = METHODS,
        model: str | None = None, window: int = 2048, words: int = 120, out: str | Path = "bench-out/summary",
        jobs: int = 1, progress: bool = True, fresh: bool = False) -> dict:
    """Summarise every story by every method; writes OUT/summary.json and returns it."""
    from ..backend.model import model_name

    methods = list(methods)
    bad = [m for m in methods if m not in METHODS]
    if not methods or bad:
        raise SettingsError(f"unknown method {bad[0]!r} — use some of {', '.join(METHODS)}" if bad
                            else "give at least one method")
    if stories is not None and stories < 1:
        raise SettingsError("--stories must be at least 1")
    if jobs < 1:
        raise SettingsError("--jobs must be at least 1")
    if words < 10:
        raise SettingsError("--words must be at least 10")
    t_start = time.perf_counter()
    items = load_stories(data, stories)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs, info = [], []
    for i, st in enumerate(items):
        path = write_story(out_dir, st)
        info.append({"story": i, "id": st["id"], "title": st["title"], "path": str(path), "chars": len(st["text"]),
                     "references": len(st["references"]), "top_names": top_names(st["text"])})
        for m in methods:
            specs.append({"story": i, "method": m, "path": str(path), "model": model, "window": window,
                          "words": words, "fresh": fresh, "references": st["references"]})
    cost = {"docstream": 0, "stream": 1, "truncate": 2, "oracle": 3}
    specs.sort(key=lambda s: (cost[s["method"]], -info[s["story"]]["chars"]))
    result: dict[str, Any] = {
        "data": str(data or default_data()), "model": model_name(model), "window": window, "words": words,
        "methods": methods, "fresh": fresh,
        "stories": info, "jobs": jobs, "torch_threads_per_job": threads_per_job(jobs) if jobs > 1 else None,
        "cores": cores(), "load_avg_start": round(os.getloadavg()[0], 2), "complete": False, "rows": []}
    json_path = out_dir / "summary.json"
    sc = scorer()
    bar = Progress(len(specs)) if progress else None

    def done(spec: dict, res: dict) -> None:
        st = items[spec["story"]]
        summ = res.get("summary", "")
        res["title"] = st["title"]
        res["words"] = len(summ.split())
        if "error" not in res:
            res.update(rouge(summ, st["references"], sc))
            res["faithfulness"], res["unsupported"] = faithfulness(summ, st["text"])
            res["coverage"], res["names_covered"] = coverage(summ, st["text"],
                                                             names=info[spec["story"]]["top_names"])
            measured = content.summarize_rows(content.measure(summ, st["text"]))
            res["vacuous"], res["grounding"] = measured["vacuous"], measured["grounding"]
        result["rows"].append(res)
        if bar:
            what = ("error: " + res["error"]) if "error" in res else (
                f"R-L {res['rougeL']:.3f}, coverage {res['coverage'] if res['coverage'] is not None else '-'}, "
                f"{res['words']} words")
            bar.line(f"{res['method']} story {spec['story'] + 1} ({st['title'][:40]}): {what}", res["seconds"])
        json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False))

    run_cells(run_cell, specs, jobs, done)
    order = {m: i for i, m in enumerate(methods)}
    result["rows"].sort(key=lambda r: (r["story"], order[r["method"]]))
    result["table"] = aggregate(result["rows"], methods)
    result["equal_length"] = equal_length(result["rows"], items, sc)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    result["complete"] = True
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    result["json"] = str(json_path)
    return result


def format_table(result: dict) -> str:
    cols = [("R-1", "rouge1"), ("R-2", "rouge2"), ("R-L", "rougeL"), ("R-L mean", "rougeL_mean"),
            ("faithful", "faithfulness"), ("coverage", "coverage"), ("vacuous", "vacuous"), ("grounding", "grounding"),
            ("words", "words"), ("s/story", "seconds")]
    lines = [f"summary: {result['model']}, window {result['window']}, {result.get('words', 120)} words asked, "
             f"{len(result['stories'])} stories, "
             f"{result.get('seconds', 0):.0f} s (jobs {result['jobs']}); ROUGE F1 = max over references "
             "(R-L mean = mean over references), averaged over stories",
             f"{'method':<10}" + "".join(f"{h:>10}" for h, _ in cols)]
    for m, agg in result["table"].items():
        cells = []
        for _, k in cols:
            v = agg.get(k)
            fmt = ".0f" if k == "words" else ".1f" if k == "seconds" else ".3f"
            cells.append(f"{'-' if v is None else format(v, fmt):>10}")
        lines.append(f"{m:<10}" + "".join(cells) + (f"  ({agg['errors']} errors)" if agg["errors"] else ""))
    for base, e in result.get("equal_length", {}).items():
        lines.append(f"at {base}'s length ({e['words']:.0f} words, {e['stories']} stories): docstream R-L "
                     f"{e['docstream_rougeL']:.3f} (mean {e['docstream_rougeL_mean']:.3f}) vs {base} "
                     f"{e['rougeL']:.3f} (mean {e['rougeL_mean']:.3f})")
    lines.append(f"per-story rows: {result.get('json', '')}")
    return "\n".join(lines)


def print_report(result: dict, as_json: bool = False) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False) if as_json else format_table(result))
