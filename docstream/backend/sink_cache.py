"""Attention-sink KV cache (StreamingLLM) for transformers 5.x decoder models.

Layout of every layer's cache along T:   [ sinks | pinned | window ]

Design choices:
- `SinkCache` subclasses transformers' `DynamicCache`, so it is passed as the model's cache argument unchanged
  (keyword probed by `compat.cache_kwargs`); the model's own `update()` appends keys/values, and layer 0's update
  also advances our bookkeeping (`_record`).
- Positions are *in-cache* positions: the cache always holds positions 0..len-1, contiguous, and the caller passes
  `position_ids = next_positions(n)` explicitly (`feed()` does it). The causal mask made by transformers from
  `get_seq_length()` is then exactly right, and positions never exceed sinks + max_pinned + window <= context.
- Eviction happens *before* each forward, in bulk (`make_room(n_incoming)`): the oldest window tokens are dropped
  so that after the append the window holds <= `window` tokens. A chunk therefore lives inside the window budget:
  the first token of a chunk of C tokens sees sinks + pinned + (window - C) earlier tokens.
- Kept keys after a gap are re-rotated (half-split RoPE, as in Llama/Mistral/Qwen) to their new positions. RoPE is a rotation, so moving a key by `delta` is
  one more rotation by delta*inv_freq of the stored (already rotated, already scaled) key: cos/sin are computed in
  fp32 *without* `attention_scaling`, the rotation runs in fp32 and is cast back. It runs at the KV-head count
  (GQA), touches only the first `rotary_dim` channels (partial rotary), and never touches values.
- Sinks are the first `sinks` tokens ever appended. The pinned region is replaced as a whole by `set_pinned()`:
  it is computed at the positions right after the sinks (attending to the sinks only), and the window is shifted
  by the length difference. It is never evicted.
- Stream numbering: tokens appended through the model (excluding pinned ones) are numbered 0, 1, 2, ...;
  `truncate(n)` undoes the last n appends (stream_position goes back by n), so a note prompt + generated note
  can be removed and the document continues with contiguous numbers. `spans()` lists the stream ranges in cache.
- Appends go into spare room at the end of a per-layer buffer (`_RoomyLayer`), so a one-token decode step
  writes one slot. Eviction and truncation also work inside that buffer (the kept window moves left, re-rotated
  on the way), so the next chunk's append copies nothing: reading The Time Machine through the cache alone
  took 31 s instead of 34 s. Pinning and restoring hand a layer new tensors (the next append starts a buffer).
- Batch B > 1 is supported for streams in lockstep (same lengths every step); bookkeeping is shared.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ..errors import SettingsError
from .compat import cache_kwargs
from .lean import lean


@dataclass
class _Book:
    """Bookkeeping shared by all layers and all batch rows (streams advance in lockstep)."""

    n_sink: int = 0  # sink tokens present (<= sinks)
    n_pinned: int = 0  # pinned tokens present
    window: list[tuple[int, int]] = field(default_factory=list)  # stream ranges [a, b) in the window, oldest first
    stream_position: int = 0  # stream tokens appended so far (net of truncate)
    evicted: int = 0  # stream tokens evicted so far
    pinned_ids: list[int] = field(default_factory=list)
    shared_pinned: bool = False  # every row's pinned region is `pinned_ids` (so a new one may reuse its prefix)

    @property
    def n_window(self) -> int:
        return sum(b - a for a, b in self.window)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _hf(model: Any) -> Any:
    """The Hugging Face causal LM inside a `LoadedModel`, or the model itself."""
    return model.model if hasattr(model, "tokenizer") and hasattr(model, "context_length") else model


class _RoomyLayer(DynamicLayer):
    """A `DynamicLayer` that appends into spare room at the end of a buffer it owns: a one-token decode step
    writes one slot instead of re-concatenating the layer (at 1,500 cached tokens that copy is ~35 MB a step
    for the embedded model). Whatever replaces `keys`/`values` (eviction, pinning, truncation, restore) leaves
    the buffer alone: the next append sees tensors it did not make and starts a new buffer."""

    SPARE = 256  # slots added whenever a new buffer is made

    def __init__(self) -> None:
        super().__init__()
        self._made: tuple[torch.Tensor, torch.Tensor] | None = None  # the views this layer last handed out
        self._buf: tuple[torch.Tensor, torch.Tensor] | None = None  # (B, H_kv, capacity, D) each

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        t = key_states.shape[-2]
        n = self.keys.shape[-2] if self.keys.dim() == 4 else 0
        if not self._ours() or n + t > self._buf[0].shape[-2]:
            shape = (*key_states.shape[:2], n + t + self.SPARE, key_states.shape[-1])
            self._buf = (key_states.new_empty(shape), value_states.new_empty(shape))
            if n:
                self._buf[0][:, :, :n], self._buf[1][:, :, :n] = self.keys, self.values
        bk, bv = self._buf
        bk[:, :, n:n + t], bv[:, :, n:n + t] = key_states, value_states
        self._hand_out(n + t)
        return self.keys, self.values

    def _ours(self) -> bool:
        return self._made is not None and self._made[0] is self.keys and self._made[1] is self.values

    def _hand_out(self, n: int) -> None:
        """`keys`/`values` become the first n slots of the buffer."""
        bk, bv = self._buf
        self.keys, self.values = bk[:, :, :n], bv[:, :, :n]
        self._made = (self.keys, self.values)

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last slots (`tokens_to_remove` < 0); the buffer stays this layer's, so the next append
        writes into it instead of copying the layer into a new one."""
        ours = self._ours()
        super().crop(tokens_to_remove)
        if ours:
            self._made = (self.keys, self.values)

    def drop(self, start: int, n: int, move_keys: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Remove slots [start, start + n): the slots after them move n to the left, their keys through
        `move_keys` (a re-rotation). In place in the buffer when the layer has one (no new buffer, and none at
        the next append either)."""
        L = self.keys.shape[-2]
        k = move_keys(self.keys[:, :, start + n:])  # (B, H_kv, L - start - n, D), a new tensor
        v = self.values[:, :, start + n:]
        if self._ours():
            bk, bv = self._buf
            bk[:, :, start:L - n], bv[:, :, start:L - n] = k, v.clone()  # the values overlap where they go
            self._hand_out(L - n)
        else:
            self.keys = torch.cat([self.keys[:, :, :start], k], dim=-2)
            self.values = torch.cat([self.values[:, :, :start], v], dim=-2)


class SinkCache(DynamicCache):
    """A bounded KV cache: `sinks` first tokens + a replaceable pinned region + a sliding window of recent tokens."""

    def __init__(self, model: Any, sinks: int = 4, window: int = 2048, max_pinned: int = 512,
                 chunk: int | None = None, context: int | None = None):
        model = _hf(model)
        cfg = model.config
        super().__init__(config=cfg)
        if not self.layers or not all(type(layer) is DynamicLayer for layer in self.layers):
            raise SettingsError(f"{cfg.model_type}: sliding-window or hybrid layers are not supported by the sink "
                                "cache — use a full-attention model such as smollm2-135m")
        context = int(context or getattr(cfg, "max_position_embeddings", 0) or 2048)
        if sinks < 0 or max_pinned < 0 or window < 1:
            raise SettingsError(f"sinks={sinks}, window={window}, max_pinned={max_pinned}: use sinks >= 0, "
                                "max_pinned >= 0 and window >= 1")
        if sinks + max_pinned + window > context:
            raise SettingsError(f"sinks ({sinks}) + pinned ({max_pinned}) + window ({window}) = "
                                f"{sinks + max_pinned + window} exceeds the model context ({context}) — lower "
                                f"--window to at most {max(context - sinks - max_pinned, 0)}")
        if chunk is not None and not 1 <= chunk <= window:
            raise SettingsError(f"chunk ({chunk}) must be between 1 and the window ({window}) — lower --chunk or "
                                "raise --window")
        self.layers = [_RoomyLayer() for _ in self.layers]
        self.sinks, self.window, self.max_pinned, self.context = sinks, window, max_pinned, context
        rope = model.model.rotary_emb if hasattr(model, "model") else model.rotary_emb
        self.rotary_emb = rope
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.rotary_dim = 2 * rope.inv_freq.numel()  # < head_dim for partial rotary
        assert self.rotary_dim <= head_dim, (self.rotary_dim, head_dim)
        self.book = _Book()
        self._appending_pinned = False

    # ------------------------------------------------------------------ sizes and positions
    @property
    def stream_position(self) -> int:
        return self.book.stream_position

    @property
    def n_pinned(self) -> int:
        return self.book.n_pinned

    @property
    def n_window(self) -> int:
        return self.book.n_window

    @property
    def batch_size(self) -> int | None:
        layer = self.layers[0]
        return layer.keys.shape[0] if layer.is_initialized and layer.keys.numel() else None

    def max_feed(self) -> int:
        """Largest number of tokens one `feed()` may take (after eviction)."""
        return self.window + (self.sinks - self.book.n_sink)

    def room(self) -> int:
        """How many tokens can be appended now without evicting anything."""
        return (self.sinks - self.book.n_sink) + (self.window - self.book.n_window)

    def spans(self) -> list[tuple[int, int]]:
        """Stream token ranges [a, b) present in the cache, in cache order (sinks first); adjacent ranges merged."""
        out: list[tuple[int, int]] = [(0, self.book.n_sink)] if self.book.n_sink else []
        for a, b in self.book.window:
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        return out

    def next_positions(self, n: int, batch: int | None = None) -> torch.Tensor:
        """position_ids (B, n) for the next n tokens: in-cache positions, contiguous after get_seq_length()."""
        L = self.get_seq_length()
        B = batch or self.batch_size or 1
        dev = self.layers[0].keys.device if self.batch_size else self.rotary_emb.inv_freq.device
        return torch.arange(L, L + n, device=dev).unsqueeze(0).expand(B, n)  # (B, n)

    def kv_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers if layer.is_initialized
                   for t in (layer.keys, layer.values))

    def _check(self) -> None:
        b = self.book
        assert self.get_seq_length() == b.n_sink + b.n_pinned + b.n_window, (self.get_seq_length(), b)
        assert b.n_window <= self.window and b.n_sink <= self.sinks and b.n_pinned <= self.max_pinned, b

    # ------------------------------------------------------------------ small named operations
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx == 0 and not self._appending_pinned:
            self.append(key_states.shape[-2])
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)

    def append(self, n: int) -> None:
        """Bookkeeping for n stream tokens appended at the end (called from layer 0's `update`)."""
        b = self.book
        into_sinks = min(n, self.sinks - b.n_sink)
        if into_sinks and (b.n_pinned or b.window):
            raise RuntimeError("sink region must be filled before the pinned region or window")
        b.n_sink += into_sinks
        a, e = b.stream_position + into_sinks, b.stream_position + n
        if e > a:
            if b.window and b.window[-1][1] == a:
                b.window[-1] = (b.window[-1][0], e)
            else:
                b.window.append((a, e))
        b.stream_position += n

    def rotation(self, delta: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (R,) fp32, of a move by `delta` positions. No `attention_scaling`: the stored keys
        already carry it."""
        ang = float(delta) * self.rotary_emb.inv_freq.float().to(self.layers[0].keys.device)  # (R/2,)
        emb = torch.cat((ang, ang), dim=-1)  # (R,)
        return emb.cos(), emb.sin()

    def rotated(self, keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """`keys` (B, H_kv, T, D) moved by the rotation (cos, sin) of `rotation()`, in fp32, cast back; a new
        tensor. Only the first `rotary_dim` channels turn (partial rotary)."""
        R = self.rotary_dim
        k = keys[..., :R]
        k = (k * cos + _rotate_half(k) * sin).to(keys.dtype)  # fp32 products: cos and sin are fp32
        return k if R == keys.shape[-1] else torch.cat([k, keys[..., R:]], dim=-1)

    def rerotate(self, start: int, end: int, delta: int) -> None:
        """Move the keys in cache slots [start, end) of every layer by `delta` positions (a RoPE rotation)."""
        if delta == 0 or end <= start:
            return
        cos, sin = self.rotation(delta)
        for layer in self.layers:
            layer.keys[:, :, start:end] = self.rotated(layer.keys[:, :, start:end], cos, sin)

    def evict(self, n: int) -> None:
        """Drop the n oldest window tokens (never sinks, never pinned); the kept window keys move n positions
        back (re-rotated on the way)."""
        b = self.book
        assert 0 <= n <= b.n_window, (n, b.n_window)
        if n == 0:
            return
        w0 = b.n_sink + b.n_pinned  # first window slot
        cos, sin = self.rotation(-n)
        for layer in self.layers:
            layer.drop(w0, n, lambda k: self.rotated(k, cos, sin))
        left = n
        while left:
            a, e = b.window[0]
            take = min(left, e - a)
            b.window[0] = (a + take, e)
            if a + take == e:
                b.window.pop(0)
            left -= take
        b.evicted += n
        self._check()

    def make_room(self, n_incoming: int) -> int:
        """Evict so that after appending n_incoming tokens the window holds <= `window`. Returns tokens evicted."""
        if n_incoming > self.max_feed():
            raise SettingsError(f"cannot append {n_incoming} tokens at once: the window holds {self.window} — "
                                f"feed chunks of at most {self.window} tokens or raise --window")
        to_window = n_incoming - (self.sinks - self.book.n_sink)
        n = max(0, self.book.n_window + to_window - self.window)
        self.evict(n)
        return n

    def truncate(self, n: int) -> None:
        """Drop the last n appended tokens (e.g. a note prompt + generated note); stream_position goes back by n."""
        b = self.book
        if n <= 0:
            return
        if n > b.n_window + (0 if b.n_pinned else b.n_sink):
            raise ValueError(f"cannot truncate {n} tokens: only {b.n_window} window tokens are in the cache")
        for layer in self.layers:
            layer.crop(-n)
        left = n
        while left and b.window:
            a, e = b.window[-1]
            take = min(left, e - a)
            b.window[-1] = (a, e - take)
            if e - take == a:
                b.window.pop()
            left -= take
        b.n_sink -= left
        b.stream_position -= n
        self._check()

    def snapshot(self) -> dict:
        """A deep copy of the tensors and the bookkeeping."""
        return {"kv": [(layer.keys.clone(), layer.values.clone()) if layer.is_initialized else None
                       for layer in self.layers], "book": copy.deepcopy(self.book)}

    def restore(self, state: dict) -> None:
        for layer, kv in zip(self.layers, state["kv"], strict=True):
            if kv is None:
                layer.reset() if layer.is_initialized else None
                continue
            if not layer.is_initialized:
                layer.lazy_initialization(*kv)
            layer.keys, layer.values = kv[0].clone(), kv[1].clone()
        self.book = copy.deepcopy(state["book"])
        self._check()

    # ------------------------------------------------------------------ model-facing operations
    def feed(self, model: Any, input_ids: torch.Tensor, logits: str | None = "last") -> torch.Tensor | None:
        """make_room + explicit position_ids + forward. input_ids (B, n). Returns logits (B, V), (B, n, V) or None."""
        assert logits in ("last", "all", None), logits
        model = _hf(model)
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        B, n = input_ids.shape
        assert self.batch_size in (None, B), f"cache holds batch {self.batch_size}, got {B}"
        self.make_room(n)
        pos = self.next_positions(n, batch=B)  # (B, n)
        input_ids = input_ids.to(pos.device)
        if n == 1 and logits == "last" and (fast := lean(model)) is not None:
            out = fast.step(input_ids[:, 0], pos[:, 0], self, None)  # (B, V)
        elif logits is None:
            model.model(input_ids=input_ids, position_ids=pos, use_cache=True, **cache_kwargs(model.model, self))
            out = None
        else:
            keep = 1 if logits == "last" else 0
            out = model(input_ids=input_ids, position_ids=pos, use_cache=True, **cache_kwargs(model, self),
                        logits_to_keep=keep).logits  # (B, n or 1, V)
            out = out[:, -1] if logits == "last" else out
        self._check()
        return out

    def set_pinned(self, model: Any, token_ids: Any) -> None:
        """Replace the pinned region by `token_ids` (list, (n,) or (B, n)); the window is shifted to match. The
        keys of a prefix the new region shares with the old one (one row for all) are kept, not recomputed."""
        model = _hf(model)
        ids = torch.as_tensor(token_ids, dtype=torch.long)
        ids = ids.unsqueeze(0) if ids.dim() == 1 else ids  # (B, P)
        P = ids.shape[1]
        b = self.book
        if P > self.max_pinned:
            raise SettingsError(f"pinned text has {P} tokens but max_pinned is {self.max_pinned} — shorten it or "
                                "raise max_pinned (and lower the window to stay within the context)")
        if b.n_sink < self.sinks:
            raise RuntimeError(f"feed at least {self.sinks} tokens (the sinks) before set_pinned")
        B = self.batch_size or ids.shape[0]
        one_row = ids.shape[0] == 1
        ids = ids.expand(B, P) if one_row else ids
        assert ids.shape[0] == B, f"pinned ids for batch {ids.shape[0]}, cache holds batch {B}"
        s, old = b.n_sink, b.n_pinned
        same = 0  # leading tokens the old and new pinned regions share (their keys stay valid: causal)
        if one_row and b.shared_pinned:
            for a, c in zip(b.pinned_ids, ids[0].tolist()):
                if a != c:
                    break
                same += 1
        win = []
        for layer in self.layers:
            if layer.is_initialized:
                win.append((layer.keys[:, :, s + old:], layer.values[:, :, s + old:]))  # (B, H_kv, W, D)
                layer.keys, layer.values = layer.keys[:, :, :s + same], layer.values[:, :, :s + same]
        if P > same:
            dev = self.layers[0].keys.device if self.layers[0].is_initialized else self.rotary_emb.inv_freq.device
            pos = torch.arange(s + same, s + P, device=dev).unsqueeze(0).expand(B, P - same)  # (B, P - same)
            self._appending_pinned = True
            try:
                model.model(input_ids=ids[:, same:].to(pos.device), position_ids=pos, use_cache=True,
                            **cache_kwargs(model.model, self))
            finally:
                self._appending_pinned = False
        for layer, (k, v) in zip(self.layers, win):
            layer.keys = torch.cat([layer.keys, k], dim=-2)
            layer.values = torch.cat([layer.values, v], dim=-2)
        b.shared_pinned = one_row
        b.n_pinned, b.pinned_ids = P, ids[0].tolist()
        L = self.get_seq_length()
        self.rerotate(s + P, L, P - old)
        self._check()
