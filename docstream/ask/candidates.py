"""The candidate evidence windows of a question, found four ways and taken in turn.

Design choices:
- `by_words`: BM25 over all the body's ~300-character sentence windows (`baselines.plain_index(doc,
  "sentences")`), the question's words weighted 1 and the book's own words related to them in meaning
  (`index/dense.py` `related`) weighted by their cosine. A name in the question (a capitalized word after its
  first) is searched as itself only: "Holmes" must not bring back "Watson".
- `by_meaning`: the windows nearest the question in meaning (the window embeddings stored at the end of a
  read, `index/dense.py`), asked twice: once with the question's names left out (`without_names`), once
  whole. A short question's embedding leans on its names, which every window about that person or place
  shares: for "Of what material was Pemberley House constructed?" the gold sentence is not among the 10
  nearest windows, for "Of what material was constructed?" it is the nearest ("It was a large, handsome stone
  building…"). On the QA dev set the five windows read hold the gold sentence of 18 of 33 paraphrased
  questions with that list second, against 14 without it (none lost), and of all 33 lexical ones either way.
- The last list, the best windows of the passages fused from chunk text, gists and rare words, comes from
  `retrieve.py` and `focus.rank_windows`.
- `interleave` takes the lists in turn, best first, and never two windows that overlap.
- Stored vectors (windows (N, 384), words (W, 384)) are unpacked once per state of the index file (path, row
  count, modification time): a batch of questions on one book reads them once. An in-memory index is read
  every time. Words are embedded when the text is chunked, windows at the end of the read: a first answer
  before the read has related words but no `by_meaning` list. Without the embedding model `by_words`
  searches the question's own words only, and `by_meaning` is empty.
"""
from __future__ import annotations

import re
from itertools import zip_longest
from typing import Any, Callable

from ..index import dense
from ..index.search import fts_terms
from .baselines import plain_index

NAME = re.compile(r"(?<=\s)[A-Z]\w*")  # a capitalized word that does not start the question

_MATRICES: dict[tuple[str, str, int, int], tuple[list[Any], Any]] = {}


def interleave(lists: list[list[tuple[int, int]]], n: int) -> list[tuple[int, int]]:
    """Up to `n` spans taken from each list in turn, best first, leaving out any that overlaps one taken."""
    out: list[tuple[int, int]] = []
    for row in zip_longest(*lists):
        for sp in row:
            if sp and len(out) < n and all(sp[1] <= s or sp[0] >= e for s, e in out):
                out.append(sp)
    return out


def by_meaning(index: Any, question: str, k: int) -> list[tuple[int, int]]:
    """The `k` embedded sentence windows nearest the question in meaning ([] when the index has none or the
    embedding model is not installed)."""
    count = index.window_count()
    embed = dense.embedder() if count else None
    if embed is None:
        return []
    spans, matrix = stored(index, "windows", count, index.windows)
    return [spans[i] for i in dense.top(embed.encode([question])[0], matrix, k)]


def without_names(question: str) -> str:
    """The question with its names (capitalized words after the first, and their "'s") left out; "" when
    fewer than two searchable words are left ("Who is Filby?" asks about the name itself)."""
    q = re.sub(r"(?<!\w)['’]s\b", "", NAME.sub("", question))
    q = re.sub(r"\s+(?=[?,.!;:])", "", " ".join(q.split()))
    return q if len(fts_terms(q)) >= 2 else ""


def word_weights(index: Any, question: str) -> dict[str, float]:
    """{word: weight} to search for `question`: its searchable words (1.0) and, but for its names, the book's
    words related to them in meaning (their cosine)."""
    terms = fts_terms(question)
    weights = {t: 1.0 for t in terms}
    count = index.word_count()
    embed = dense.embedder() if count else None
    if embed is None:
        return weights
    names = {w.lower() for w in NAME.findall(question)}
    words, matrix = stored(index, "words", count, index.words)
    for w, c in dense.related([t for t in terms if t not in names], words, matrix, embed).items():
        weights[w] = max(weights.get(w, 0.0), c)
    return weights


def by_words(doc: Any, weights: dict[str, float], k: int) -> list[tuple[int, int]]:
    """The `k` sentence windows of the body best matching a question's `word_weights`."""
    return [(c.start, c.end) for c in plain_index(doc, "sentences").weighted(weights, k)]


def stored(index: Any, what: str, count: int, read: Callable[[], tuple[list[Any], list[bytes]]]
           ) -> tuple[list[Any], Any]:
    """(keys, (count, 384) vectors) of the index's `what` ("windows" or "words"), unpacked once per state of
    the index file."""
    def load() -> tuple[list[Any], Any]:
        keys, blobs = read()
        return keys, dense.unpack(blobs)

    if index.path is None:
        return load()
    key = (str(index.path), what, count, index.path.stat().st_mtime_ns)
    if key not in _MATRICES:
        for old in [k for k in _MATRICES if k[1] == what]:  # one book at a time: a batch keeps one of each
            del _MATRICES[old]
        _MATRICES[key] = load()
    return _MATRICES[key]
