"""Retrieval for questions: pick the passages (and summaries) a small model should see to answer.

Design choices:
- Several ranked lists, fused with weighted reciprocal rank fusion (RRF, k=60), so no single scorer's
  scale matters; the weights (`WEIGHTS`) are set from `docstream bench qa`, not by hand:
    1. BM25 over chunk text          (weight 3)
    2. BM25 over note gists          (weight 1)
    3. BM25 over tags                (weight 0)
    4. query expansion through the tag index (weight 0): question words are matched to tag names
       through `tags_fts` (porter stems and `word*` prefixes), each matched tag is weighted by how much of
       it the question covers (coverage² × words matched: a 2-word tag matched by one word counts 1/4, matched
       by both counts 2) times its IDF; the chunks carrying those tags are ranked by the summed weight;
    5. co-occurring tags (weight 0): tags that appear with the well-matched tags in >= 2 chunks and
       mostly only there (association = co-occurrences / document frequency >= 0.5) pull in their chunks;
    6. rare terms (weight 1): BM25 over all columns for only the question words found in <= max(3, 2%)
       of chunks, so the rare word a detail question hinges on (a name, an object) counts;
    7. related words (weight 3, as the text): BM25 over chunk text for the book's own words nearest the
       question's in meaning (`candidates.word_weights`, `index/dense.py`), so a paraphrase ("the larva atop
       the fungus") finds the chunk that says "caterpillar" and "mushroom". On the dev set's 33 paraphrased
       questions it took retrieval from 0.55 to 0.64 at weights 3 to 6 (0.55-0.58 at 1-2); the answers were
       as often right (0.36).
  Lists 3-5 find chunks whose text never uses the question's word but whose notes were tagged with it; on
  the dev set they cost more lexical questions than they won paraphrased ones, so they only add candidates
  (score 0) and report the matched tags (`expanded_tags`).
- Question scaffolding ("where does X appear", "what happened", "how is X described") is dropped before
  searching (`QUESTION_WORDS`), unless nothing else is left.
- The budget is spent by rank: each candidate's token count is the stored `chunks.tokens` when present,
  else `count_tokens(text)`; a candidate that does not fit is skipped and smaller, lower-ranked ones may
  still fill the space, up to `k` passages. Only then are the kept passages sorted into document order.
  If not even the best passage fits, it is cut to the budget (`truncated=True`, span shortened when the
  chunk text maps 1:1 onto its span).
- `budget_tokens` covers passages only; the chapter summaries of the chapters the passages come from and
  the book summary are returned alongside as plain text for the caller to fit (they are short), with the
  `Summary` rows (chapter, chunk span) in `summary_rows`.
- A question with no searchable words (only stop words or punctuation) gives an empty `Retrieval`, not
  an error; the CLI decides whether that is a `QuestionError`.
- Neighbouring chunks are not added (left to the caller: `index.chunks([p.chunk - 1, p.chunk + 1])`).
"""
from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from ..index import Index, Summary, search
from ..index.rows import Span
from ..index.search import STOP_WORDS, fts_query, fts_terms, ranked_chunks
from .candidates import word_weights

__all__ = ["Passage", "Retrieval", "retrieve", "rrf", "RRF_K"]

RRF_K = 60
DEPTH = 50  # candidates taken from each ranked list
# Set from `docstream bench qa --no-answer` on the dev set's read books (The Time Machine, Alice: 22 questions):
# the chunk text dominates; notes (gist) and rare words break ties; the tag lists are computed (their matches
# are reported in `expanded_tags`) but do not rank, because with them the dev set found less (see README).
# Related words: from all 66 questions of the six novels (list 7 above).
WEIGHTS = {"text": 3.0, "gist": 1.0, "tags": 0.0, "rare": 1.0, "tag_expansion": 0.0, "tag_cooccurrence": 0.0,
           "related": 3.0}
RARE_FRACTION = 0.02
QUESTION_WORDS = frozenset("""
    appear appears appeared appearing appearance happen happens happened happening describe describes described
    description mention mentions mentioned occur occurs occurred mean means meant explain explains explained
    kind sort really exactly actually according
""".split())


@dataclass
class Passage(Span):
    """One retrieved chunk with everything needed to quote and cite it."""

    chunk: int
    text: str
    gist: str | None
    score: float
    rank: int  # 1 = best
    tokens: int = 0
    truncated: bool = False


@dataclass
class Retrieval:
    question: str
    passages: list[Passage] = field(default_factory=list)  # document order
    ranked: list[int] = field(default_factory=list)  # kept chunk ordinals, best first
    chapter_summaries: list[str] = field(default_factory=list)  # texts, chapter order
    book_summary: str | None = None  # text of the stored book summary
    summary_rows: list[Summary] = field(default_factory=list)  # the same summaries with chapter/chunk spans
    tokens: int = 0  # tokens used by the passages
    terms: list[str] = field(default_factory=list)  # searchable words of the question
    expanded_tags: list[str] = field(default_factory=list)  # tags matched by the question
    related: list[str] = field(default_factory=list)  # the book's words related to the question's, searched too
    elapsed_ms: float = 0.0


def rrf(lists: dict[str, list[int]], weights: dict[str, float] | None = None, k: int = RRF_K) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion: score(c) = sum_l w_l / (k + rank_l(c)), best first, ties by ordinal."""
    scores: dict[int, float] = defaultdict(float)
    for name, ranked in lists.items():
        w = (weights or {}).get(name, 1.0)
        for rank, chunk in enumerate(ranked, start=1):
            scores[chunk] += w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


_SUFFIXES = ("ational", "ation", "ness", "ment", "ing", "ies", "ied", "ed", "es", "er", "ly", "'s", "s")


def _stem(w: str) -> str:
    for suf in _SUFFIXES:
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    return w


def _same_word(a: str, b: str) -> bool:
    if a == b:
        return True
    sa, sb = _stem(a), _stem(b)
    if sa == sb:
        return True
    short, long_ = sorted((sa, sb), key=len)
    return len(short) >= 4 and long_.startswith(short)


def _tag_lists(index: Index, question: str, terms: list[str], n_chunks: int) -> tuple[list[int], list[int], list[str]]:
    """(chunks by matched tags, chunks by co-occurring tags, matched tag names)."""
    match = fts_query(question, prefix=True)
    if not match:
        return [], [], []
    db = index.db
    rows = search.tag_matches(db, match)
    weights: dict[int, float] = {}
    coverage: dict[int, float] = {}
    names: dict[int, str] = {}
    for tag_id, name, df in rows:
        words = [w for w in re.findall(r"\w+", name) if w not in STOP_WORDS] or name.split()
        hit = sum(1 for w in words if any(_same_word(w, t) for t in terms))
        if not hit or not df:
            continue
        cov = hit / len(words)
        coverage[tag_id] = cov
        names[tag_id] = name
        weights[tag_id] = cov * cov * hit * math.log(1 + n_chunks / df)
    if not weights:
        return [], [], []
    scores: dict[int, float] = defaultdict(float)
    for chunk, tag_id in search.chunks_with_tags(db, list(weights)):
        scores[chunk] += weights[tag_id]
    by_tag = [c for c, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))][:DEPTH]

    seeds = sorted((t for t in weights if coverage[t] >= 0.5), key=lambda t: -weights[t])[:5]
    co_list: list[int] = []
    if seeds:
        co = search.cooccurring_tags(db, seeds, exclude=list(weights), min_chunks=2)
        assoc = {t: c / df for t, c, df in co if df and c / df >= 0.5}
        top = dict(sorted(assoc.items(), key=lambda kv: -kv[1] * math.log1p(kv[1]))[:5])
        if top:
            co_scores: dict[int, float] = defaultdict(float)
            for chunk, tag_id in search.chunks_with_tags(db, list(top)):
                if chunk not in scores:
                    co_scores[chunk] += top[tag_id]
            co_list = [c for c, _ in sorted(co_scores.items(), key=lambda kv: (-kv[1], kv[0]))][:DEPTH]
    matched = [names[t] for t in sorted(weights, key=lambda t: -weights[t])]
    return by_tag, co_list, matched


def retrieve(
    index: Index,
    question: str,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    k: int = 8,
    weights: dict[str, float] | None = None,
) -> Retrieval:
    """The best passages for `question` that fit in `budget_tokens`, in document order, plus summaries.
    `weights`: the question's `candidates.word_weights` when the caller has them already."""
    t0 = time.perf_counter()
    terms = fts_terms(question)
    out = Retrieval(question=question, terms=[t for t in terms if t not in QUESTION_WORDS] or terms)
    if not out.terms or budget_tokens <= 0 or k <= 0:
        return _finish(index, out, [], t0)
    db = index.db
    n_chunks = search.chunk_count(db) or 1
    query = " ".join(out.terms)
    lists = {col: ranked_chunks(db, query, DEPTH, column=col) for col in ("text", "gist", "tags")}
    rare = [t for t in out.terms if 0 < search.chunk_df(db, t) <= max(3, RARE_FRACTION * n_chunks)]
    lists["rare"] = ranked_chunks(db, " ".join(rare), DEPTH) if rare else []
    lists["tag_expansion"], lists["tag_cooccurrence"], out.expanded_tags = _tag_lists(
        index, query, out.terms, n_chunks)
    weights = word_weights(index, question) if weights is None else weights
    out.related = [w for w, c in weights.items() if c < 1]
    lists["related"] = ranked_chunks(db, " ".join(out.related), DEPTH, column="text") if out.related else []
    fused = rrf(lists, WEIGHTS)
    if not fused:
        return _finish(index, out, [], t0)

    candidates = fused[: max(4 * k, 20)]
    rows = {c.ordinal: c for c in index.chunks(c for c, _ in candidates)}
    gists = search.gists_of(db, [c for c, _ in candidates])
    kept: list[Passage] = []
    used = 0
    for rank, (ordinal, score) in enumerate(candidates, start=1):
        c = rows.get(ordinal)
        if c is None:
            continue
        tokens = c.tokens if c.tokens is not None else count_tokens(c.text)
        p = Passage(c.ordinal, c.text, gists.get(ordinal), score, rank, tokens, chapter=c.chapter,
                    chapter_title=c.chapter_title, char_start=c.char_start, char_end=c.char_end,
                    line_start=c.line_start, line_end=c.line_end)
        if used + tokens <= budget_tokens:
            kept.append(p)
            used += tokens
        elif not kept and rank == 1:
            p = _truncate(p, budget_tokens, count_tokens)
            if p is not None:
                kept.append(p)
                used += p.tokens
        if len(kept) >= k or budget_tokens - used <= 0:
            break

    out.tokens = used
    return _finish(index, out, kept, t0)


def _finish(index: Index, out: Retrieval, kept: list[Passage], t0: float) -> Retrieval:
    """Order the kept passages by document position and attach the summaries (the book's always)."""
    out.ranked = [p.chunk for p in kept]
    out.passages = sorted(kept, key=lambda p: p.chunk)
    chapters = sorted({p.chapter for p in kept if p.chapter is not None})
    if chapters:
        by_ch = {s.chapter: s for s in index.summaries("chapter")}
        out.summary_rows = [by_ch[ch] for ch in chapters if ch in by_ch]
        out.chapter_summaries = [s.text for s in out.summary_rows]
    book = index.latest_summary("book")
    if book is not None:
        out.summary_rows.append(book)
        out.book_summary = book.text
    out.elapsed_ms = (time.perf_counter() - t0) * 1000
    return out


def _truncate(p: Passage, budget: int, count_tokens: Callable[[str], int]) -> Passage | None:
    """Cut `p.text` (at a word boundary) until it fits `budget` tokens; None if nothing fits."""
    text = p.text
    n = count_tokens(text)
    for _ in range(8):
        if n <= budget or not text:
            break
        cut = max(0, int(len(text) * budget / max(n, 1) * 0.95) - 1)
        text = text[:cut]
        if " " in text[-40:]:
            text = text[: text.rfind(" ")]
        n = count_tokens(text)
    if not text or n > budget:
        return None
    exact = p.char_end - p.char_start == len(p.text)
    p.char_end = p.char_start + len(text) if exact else p.char_end
    if p.line_start is not None and exact:
        p.line_end = p.line_start + text.count("\n")
    p.text, p.tokens, p.truncated = text, n, True
    return p
