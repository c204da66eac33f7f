"""Batched decoding of *forks*: cache states taken at different moments of one or many streams.

A fork is what an aside would have decoded from: the KV cache right after a prompt was fed (the recent window,
the pinned instruction, the note prompt) plus the logits of the prompt's last token. Reading several chunks, or
several documents, leaves several forks; decoding them together is where a CPU gains (decode is bound by
memory bandwidth: one pass over the weights serves every row).

Design choices:
- A fork owns a copy of its KV (per layer (1, H_kv, L, D)); the stream goes on after `truncate`-ing the prompt.
- Rows have different lengths: they are *left-padded* into one buffer (B, H_kv, Lmax + max_new, D) with a 2-D
  attention mask (0 on padding). The stored keys keep the rotations they were computed with; each row's new
  tokens get its own `position_ids` (L_i, L_i + 1, ...), so relative positions are exact.
- The buffer is preallocated (`_BufferLayer`): a decode step writes one slot instead of re-concatenating the
  whole cache, which on a CPU costs more than the step itself at these lengths.
- A row that finishes (EOS, stop string, its own max tokens) takes the next waiting fork when there is one
  (continuous batching: the fork's KV is written right-aligned at the current column, with its own mask and
  positions). With none waiting it idles until half the rows have finished, then those leave the batch
  together (`select` copies every layer's buffer: ~30 ms at 16 rows, more than a step with a few idle rows).
- Each row sums the log-probability of what it emits (before the repeat block), so `Fork.confidence` is the
  model's own belief in its answer.
- A fork may carry a `give_up` test on its text so far (a note that already talks about "the narrative" will
  be thrown away by the content gate): the row stops there and its slot goes to the next fork.
- Greedy decoding with the same n-gram repeat block as `generate()`, so a batched note equals the note an
  aside would have written (up to float rounding in the padded attention). A fork may also carry n-grams of
  other texts to avoid (`Fork.avoid`): a note must not copy earlier notes or the pinned summary. Forks that
  share one `avoid` dict add what they generate to it, so notes of one document decoded together do not
  copy each other either.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .compat import cache_kwargs
from .generate import _Detok, _eos_ids, block_repeats
from .lean import lean
from .sink_cache import SinkCache, _hf


@dataclass
class Fork:
    """A frozen cache state ready to decode from."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (1, H_kv, L, D)
    logits: torch.Tensor  # (V,) after the prompt's last token
    position: int  # position of the next token (> L - 1 when the older window was left out)
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    sentence: bool = False  # stop after the first complete sentence
    avoid: dict[tuple[int, ...], set[int]] | None = None  # n-grams of other texts not to repeat (`ngram_index`)
    give_up: Callable[[str], bool] | None = None  # true for a text so far that is already unusable: stop there
    logprob: float = 0.0  # sum of the log-probabilities of the tokens decoded
    scored: int = 0  # tokens in `logprob`

    @property
    def confidence(self) -> float | None:
        """Mean log-probability per decoded token (the model's own confidence), None before decoding."""
        return self.logprob / self.scored if self.scored else None

    @property
    def length(self) -> int:
        return self.kv[0][0].shape[-2]


def fork(model: Any, cache: SinkCache, prompt_ids: Sequence[int], max_new_tokens: int,
         stop: Sequence[str] = (), recent: int | None = None, sentence: bool = False,
         text_ids: Sequence[int] = ()) -> Fork:
    """Feed `prompt_ids` into `cache`, copy the state out as a `Fork`, and remove the prompt again.

    `text_ids`: document tokens to feed first, in the same forward pass (they stay in the cache): one pass
    over the weights instead of two for a chunk and its note prompt.

    `recent`: keep only sinks + pinned + the last `recent` window tokens (+ the prompt) in the fork. The kept
    keys keep their positions (a gap, as if the middle were masked out), and decoding is cheaper: at batch 8
    reading the KV costs more than reading the weights."""
    model = _hf(model)
    assert cache.batch_size in (None, 1), "forks are taken from batch-1 streams"
    n = len(prompt_ids)
    logits = cache.feed(model, torch.tensor([list(text_ids) + list(prompt_ids)]), logits="last")  # (1, V)
    L = cache.get_seq_length()
    head = cache.book.n_sink + cache.book.n_pinned
    tail = n + (recent if recent is not None else L)
    if head + tail < L:
        kv = [(torch.cat([k[:, :, :head], k[:, :, L - tail:]], dim=-2),  # (1, H_kv, head + tail, D)
               torch.cat([v[:, :, :head], v[:, :, L - tail:]], dim=-2))
              for k, v in ((layer.keys, layer.values) for layer in cache.layers)]
    else:
        kv = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    cache.truncate(n)
    return Fork(kv=kv, logits=logits[0].float().cpu(), position=L, max_new_tokens=max_new_tokens,
                stop=tuple(stop), sentence=sentence)


def prompt_fork(model: Any, prompt_ids: Sequence[int], max_new_tokens: int, stop: Sequence[str] = (),
                sentence: bool = False) -> Fork:
    """A fork of a fresh cache holding only `prompt_ids` (a one-off completion, batched with others)."""
    model = _hf(model)
    ctx = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    assert len(prompt_ids) + max_new_tokens <= ctx, f"prompt of {len(prompt_ids)} tokens does not fit {ctx}"
    cache = SinkCache(model, sinks=0, window=len(prompt_ids), max_pinned=0, context=ctx)
    return fork(model, cache, prompt_ids, max_new_tokens, stop, sentence=sentence)


class _BufferLayer(DynamicLayer):
    """A KV layer over a preallocated buffer (B, H_kv, capacity, D); `keys`/`values` are views of the filled part."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, filled: int):
        super().__init__()
        self.buf_k, self.buf_v, self.n = k, v, filled
        self.dtype, self.device, self.is_initialized = k.dtype, k.device, True
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self.buf_k[:, :, :self.n], self.buf_v[:, :, :self.n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        t = key_states.shape[-2]
        assert self.n + t <= self.buf_k.shape[-2], "batch buffer overflow"
        self.buf_k[:, :, self.n:self.n + t] = key_states
        self.buf_v[:, :, self.n:self.n + t] = value_states
        self.n += t
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.n

    def grow(self, extra: int) -> None:
        """`extra` more empty columns at the end (refilled rows ran past the first estimate)."""
        self.buf_k, self.buf_v = (torch.cat([b, b.new_zeros(*b.shape[:2], extra, b.shape[-1])], dim=2)
                                  for b in (self.buf_k, self.buf_v))
        self._views()

    def select(self, rows: torch.Tensor) -> None:
        self.buf_k, self.buf_v = self.buf_k[rows], self.buf_v[rows]
        self._views()


def decode_forks(model: Any, tokenizer: Any, forks: list[Fork], no_repeat_ngram: int = 0,
                 width: int | None = None) -> tuple[list[str], int]:
    """Greedy-decode every fork in one ragged batch of at most `width` rows (default: all). When a row
    finishes and forks are waiting, the next one takes its slot (continuous batching): its KV is written
    right-aligned at the current column with its own mask and positions. Returns (texts, tokens generated)."""
    model = _hf(model)
    if not forks:
        return [], 0
    B = min(width or len(forks), len(forks))
    waiting = list(range(B, len(forks)))  # fork indices still to admit, in order
    Lmax = max(f.length for f in forks)  # the first column every fork fits before (later ones too)
    cap = Lmax + max(f.max_new_tokens for f in forks) + 1
    k0, v0 = forks[0].kv[0][0], forks[0].kv[0][1]
    layers = [_BufferLayer(k0.new_zeros(B, k0.shape[1], cap, k0.shape[-1]),  # (B, H_kv, cap, D), left-padded
                           v0.new_zeros(B, v0.shape[1], cap, v0.shape[-1]), Lmax) for _ in forks[0].kv]
    cache = DynamicCache(config=model.config)
    cache.layers = layers
    fast = lean(model)
    mask = torch.zeros(B, cap, dtype=torch.long, device=k0.device)  # (B, cap): 1 where a row has a token
    pos = torch.zeros(B, dtype=torch.long, device=k0.device)  # next position of every row
    eos = _eos_ids(model, tokenizer)
    detoks = [_Detok(tokenizer, f.stop, f.sentence) for f in forks]
    out = [""] * len(forks)
    generated = 0

    def take(i: int, logits: torch.Tensor) -> int | None:
        """Pick fork i's next token; returns it when the row goes on (it must be fed), else None."""
        nonlocal generated
        f = forks[i]
        tid = int(block_repeats(logits, detoks[i].ids, no_repeat_ngram, f.avoid).argmax(-1))
        if tid in eos or len(detoks[i].ids) >= f.max_new_tokens:
            return None
        f.logprob += float(logits[tid] - torch.logsumexp(logits, -1))  # log-softmax of the one token
        f.scored += 1
        out[i] += detoks[i].push(tid)
        generated += 1
        ids, avoid = detoks[i].ids, f.avoid
        if avoid is not None and no_repeat_ngram > 0 and len(ids) >= no_repeat_ngram:  # shared: rows avoid
            avoid.setdefault(tuple(ids[-no_repeat_ngram:-1]), set()).add(tid)  # each other's n-grams too
        done = detoks[i].stopped or len(detoks[i].ids) >= f.max_new_tokens \
            or (f.give_up is not None and f.give_up(out[i]))
        return None if done else tid

    def place(r: int, i: int) -> None:
        n, f = layers[0].n, forks[i]
        for layer, (k, v) in zip(layers, f.kv, strict=True):
            layer.buf_k[r, :, n - f.length:n] = k[0]
            layer.buf_v[r, :, n - f.length:n] = v[0]
        mask[r] = 0
        mask[r, n - f.length:n] = 1
        pos[r] = f.position

    live: list[int] = []  # fork index of every batch row
    feed: list[int | None] = []  # token each row feeds next (None: the row is done)
    for r in range(B):
        place(r, r)
        live.append(r)
        feed.append(take(r, forks[r].logits))
    while True:
        for r in range(len(live)):  # refill finished rows from the waiting forks
            while feed[r] is None and waiting:
                i = waiting.pop(0)
                if (t := take(i, forks[i].logits)) is not None:
                    place(r, i)
                    live[r], feed[r] = i, t
        keep = [r for r in range(len(live)) if feed[r] is not None]
        if not keep:
            break
        if 2 * len(keep) <= len(live):  # finished rows leave the batch once they are half of it (a copy of
            # every layer's buffer costs more than a few idle rows riding along)
            rows = torch.tensor(keep, device=k0.device)
            for layer in layers:
                layer.select(rows)
            mask, pos = mask[rows], pos[rows]
            live, feed = [live[r] for r in keep], [feed[r] for r in keep]
        n = layers[0].n
        if n + 1 > mask.shape[1]:
            for layer in layers:
                layer.grow(64)
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], 64)], dim=1)
        mask[:, n] = 1
        nxt = torch.tensor([0 if t is None else t for t in feed], device=k0.device)  # (B_rows,)
        if fast is not None:
            logits = fast.step(nxt, pos, cache, mask[:, :n + 1]).cpu()  # (B_rows, V)
        else:
            logits = model(input_ids=nxt.unsqueeze(1), position_ids=pos.unsqueeze(1),
                           attention_mask=mask[:, :n + 1], use_cache=True, **cache_kwargs(model, cache),
                           logits_to_keep=1).logits[:, -1].float().cpu()  # (B_rows, V)
        pos = pos + 1
        feed = [None if feed[r] is None else take(i, logits[r]) for r, i in enumerate(live)]
    for i, d in enumerate(detoks):
        if not d.stopped:
            out[i] += d.flush()
    return out, generated
