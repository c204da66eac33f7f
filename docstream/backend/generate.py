"""Streaming decode on top of a `SinkCache`.

Design choices:
- `generate()` is an iterator of text deltas. The prompt is fed in one forward (`cache.feed`), then one token per
  forward; `feed` evicts from the window as needed, so generations longer than the window are fine.
- Incremental detokenization: the generated ids are decoded as a whole each step (notes are short, so this is
  cheap and exact for any tokenizer) and only text past what was already yielded is emitted. Text ending in U+FFFD
  (half a UTF-8 character) is held back, and so is any suffix that could be the start of a stop string. A stop
  string is never yielded; generation stops on EOS (the tokenizer's and the generation config's) too.
- The stopping token (EOS or the one completing a stop string) is *not* fed to the cache. Everything fed is
  counted in `cache.stream_position`, so a caller removes prompt + note with
  `cache.truncate(cache.stream_position - before)`.
- Greedy by default; temperature/top-p sampling uses a private `torch.Generator` seeded by `seed`.
- `generate_batch()` runs B prompts of equal length in lockstep on a batch-B cache and returns B strings.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..text.sentences import SENTENCE_END
from .sink_cache import SinkCache, _hf


def chat_ids(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of `messages` rendered with the tokenizer's chat template (ChatML for SmolLM2)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer.encode(text, add_special_tokens=False)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif src is not None:
            ids.update(int(i) for i in src)
    return ids


def _as_ids(prompt_ids: Any) -> torch.Tensor:
    ids = torch.as_tensor(prompt_ids, dtype=torch.long)
    return ids.unsqueeze(0) if ids.dim() == 1 else ids  # (B, T)


def _pick(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) -> next token ids (B,)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sp, si = probs.sort(dim=-1, descending=True)
        drop = sp.cumsum(dim=-1) - sp > top_p  # keep the smallest prefix whose mass reaches top_p
        sp = sp.masked_fill(drop, 0.0)
        choice = torch.multinomial(sp, 1, generator=gen)  # (B, 1)
        return si.gather(-1, choice).squeeze(-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def ngram_index(ids: Sequence[int], n: int) -> dict[tuple[int, ...], set[int]]:
    """{(n-1)-gram: the tokens that follow it in `ids`}: the n-grams an output must not repeat."""
    out: dict[tuple[int, ...], set[int]] = {}
    for i in range(len(ids) - n + 1):
        out.setdefault(tuple(ids[i:i + n - 1]), set()).add(ids[i + n - 1])
    return out


def block_repeats(logits: torch.Tensor, history: list[int], n: int,
                  avoid: dict[tuple[int, ...], set[int]] | None = None) -> torch.Tensor:
    """Forbid the tokens that would repeat an n-gram of `history` (logits (V,) or (1, V)); small greedy
    models otherwise loop ("the story of the story of …"). `avoid` (from `ngram_index`) adds n-grams of
    other texts: earlier notes, the pinned summary. n <= 0 disables it."""
    if n <= 0 or len(history) < n - 1:
        return logits
    prefix = tuple(history[-(n - 1):]) if n > 1 else ()
    banned = [history[i + n - 1] for i in range(len(history) - n + 1) if tuple(history[i:i + n - 1]) == prefix]
    if avoid:
        banned += avoid.get(prefix, ())
    if banned:
        logits = logits.clone()
        logits[..., banned] = float("-inf")
    return logits


def _holdback(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class _Detok:
    """Incremental detokenizer with stop strings: push ids, get safe text deltas. With `sentence=True` it
    also stops after the first complete sentence (the punctuation is kept)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], sentence: bool = False):
        self.tok, self.stops = tokenizer, [s for s in stops if s]
        self.sentence = sentence
        self.ids: list[int] = []
        self.sent = 0  # characters already yielded
        self.stopped = False

    def push(self, tid: int) -> str:
        self.ids.append(tid)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        cut = [i for i in (text.find(s, max(self.sent - len(s) + 1, 0)) for s in self.stops) if i >= 0]
        if self.sentence and (m := SENTENCE_END.search(text)):
            cut.append(m.end())
        if cut:
            self.stopped = True
            end = min(cut)
        else:
            if text.endswith("\ufffd"):
                return ""  # half a UTF-8 character: wait for the rest
            end = len(text) - _holdback(text, self.stops)
        out = text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return out

    def flush(self) -> str:
        text = self.tok.decode(self.ids, skip_special_tokens=True).rstrip("\ufffd")
        out = text[self.sent:]
        self.sent = len(text)
        return out


def generate(lm_or_model: Any, tokenizer: Any, cache: SinkCache, prompt_ids: Any, max_new_tokens: int = 256,
             stop: Sequence[str] = ("\n",), temperature: float = 0.0, top_p: float = 1.0,
             seed: int | None = None, no_repeat_ngram: int = 0) -> Iterator[str]:
    """Feed `prompt_ids` into `cache` and yield text deltas of the continuation (batch 1)."""
    model = _hf(lm_or_model)
    tokenizer = tokenizer or lm_or_model.tokenizer
    ids = _as_ids(prompt_ids)
    assert ids.shape[0] == 1, "generate() is batch 1; use generate_batch()"
    eos = _eos_ids(model, tokenizer)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    detok = _Detok(tokenizer, stop)
    logits = cache.feed(model, ids, logits="last")  # (1, V)
    for step in range(max_new_tokens):
        tid = int(_pick(block_repeats(logits.cpu(), detok.ids, no_repeat_ngram), temperature, top_p, gen)[0])
        if tid in eos:
            break
        delta = detok.push(tid)
        if delta:
            yield delta
        if detok.stopped:
            return
        if step + 1 < max_new_tokens:
            logits = cache.feed(model, torch.tensor([[tid]]), logits="last")
    tail = detok.flush()
    if tail:
        yield tail


def generate_batch(lm_or_model: Any, tokenizer: Any, cache: SinkCache, prompt_ids: Any, max_new_tokens: int = 256,
                   stop: Sequence[str] = ("\n",), temperature: float = 0.0, top_p: float = 1.0,
                   seed: int | None = None) -> list[str]:
    """B prompts of equal length (B, T) in lockstep on a batch-B cache; returns the B completions.

    Rows that finished keep being fed (their extra tokens are discarded) so all rows stay the same length.
    """
    model = _hf(lm_or_model)
    tokenizer = tokenizer or lm_or_model.tokenizer
    ids = _as_ids(prompt_ids)  # (B, T)
    B = ids.shape[0]
    eos = _eos_ids(model, tokenizer)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    detoks = [_Detok(tokenizer, stop) for _ in range(B)]
    out = [""] * B
    done = [False] * B
    logits = cache.feed(model, ids, logits="last")  # (B, V)
    for step in range(max_new_tokens):
        nxt = _pick(logits.cpu(), temperature, top_p, gen)  # (B,)
        for i in range(B):
            if done[i]:
                continue
            tid = int(nxt[i])
            if tid in eos:
                done[i] = True
                continue
            out[i] += detoks[i].push(tid)
            done[i] = detoks[i].stopped
        if all(done) or step + 1 == max_new_tokens:
            break
        logits = cache.feed(model, nxt.unsqueeze(1), logits="last")
    for i in range(B):
        if not detoks[i].stopped:
            out[i] += detoks[i].flush()
    return out
