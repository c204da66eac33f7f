"""A lean decode step: one token per row through a Llama-family model without the transformers module stack.

Profiled on the embedded model (int4, one row, 270 cached tokens), a transformers forward spent about half of
each 37 ms decode step outside the matrix kernels: ~1,200 small tensor operations a step (per-step mask and
rotary construction, dtype round trips, views) and seven separate projections per layer. A decode step is a
fixed recipe, so it is written out here once.

Design choices:
- Only the decode step (one new token per row) takes this path; prefill keeps the transformers forward, whose
  large matrix products dominate there. `SinkCache.feed` (one token) and `decode_forks` call `step()`.
- The projections sharing an input are fused: q|k|v into one matrix product, gate|up into another (7 → 4 per
  layer). The fused matrix is built once and the layers' weights become views of it (no second copy). In the
  `int4` format the layers' packed int4 rows are joined the same way (groups of 32 run along the input, so
  this is exactly what quantizing the fused matrix would give, without the 0.4 s it takes; `int4.joinable`)
  and become views of it; like them, the step takes the int4 copy for at most `int4.SMALL_ROWS` rows, the
  bf16 one above. The transformers path computes the same whether or not a decode step ran before in the
  process (a batch read in one process equals the same documents read by separate workers), and `bench
  engine` scores perplexity through the layers.
- The arithmetic follows the transformers Llama code: RMSNorm in fp32 cast back to the model's dtype, rotary
  cos/sin computed in fp32 (with `attention_scaling`) and cast, attention through SDPA with grouped KV heads,
  residual adds in the model's dtype. Logits agree with the transformers forward (tested on a random Llama).
- Every tensor call costs 2-4 us of dispatch on this CPU whatever its size, so the step counts calls: RMSNorm
  is four (a fp32 vector norm, one fused multiply-add for mean + eps, rsqrt, the scaled product), RoPE for
  queries and keys together is three (rotate-half as a roll, its sign folded into sin), cos/sin are computed
  once per step for all layers, and a batch with no padding passes no mask.
- Supported: Llama-style decoders (`LlamaForCausalLM` and look-alikes): SiLU MLP, RMSNorm, full rotary with a
  fixed frequency table, no biases. Anything else (`supported()` says why not) keeps the transformers path,
  and so do the torch.ao formats (fp16w, int8), whose layers are not plain matrices.
- The KV cache is the caller's: `cache.update(k, v, layer)` appends and returns the layer's keys/values, so the
  sink cache's bookkeeping and the fork buffers work unchanged.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import int4


def supported(model: Any) -> str | None:
    """None when `step()` can run `model`, else why not."""
    cfg = model.config
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "not a decoder with model.layers"
    if getattr(cfg, "hidden_act", None) != "silu" or getattr(cfg, "attention_bias", False) \
            or getattr(cfg, "mlp_bias", False):
        return "needs a SiLU MLP without biases"
    rope = inner.rotary_emb
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if getattr(rope, "rope_type", "default") in ("dynamic", "longrope") or 2 * rope.inv_freq.numel() != head_dim:
        return "needs full rotary with a fixed frequency table"
    for layer in inner.layers:
        a, m = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        names = ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")
        if a is None or m is None or not all(hasattr(a, n) for n in names[0]) \
                or not all(hasattr(m, n) for n in names[1]):
            return "needs Llama-style attention and MLP layers"
        for lin in (*(getattr(a, n) for n in names[0]), *(getattr(m, n) for n in names[1])):
            if type(lin) not in (nn.Linear, int4.Int4Linear) or lin.bias is not None:
                return f"layer type {type(lin).__name__} is not a plain or int4 matrix"
    head = model.get_output_embeddings()
    if type(head) not in (nn.Linear, int4.Int4Linear, int4.Int8Linear) or head.bias is not None:
        return f"output head {type(head).__name__} is not a plain or compact matrix"
    return None


class _Fused:
    """Linear layers that share one input, as one matrix product: (M, K) -> (M, sum N). The fused matrix is
    built once and the layers' weights become views of it (no second copy); int4 layers also get an int4 copy
    of it, for calls of at most `int4.SMALL_ROWS` rows."""

    def __init__(self, *linears: Any):
        sizes = [lin.out_features for lin in linears]  # N of each layer
        if len(linears) == 1:
            self.weight = linears[0].weight.detach()  # (N, K)
        else:
            self.weight = torch.cat([lin.weight.detach() for lin in linears])  # (sum N, K)
            for lin, w in zip(linears, self.weight.split(sizes)):
                lin.weight = nn.Parameter(w, requires_grad=False)
        self.packed = self.sz = None
        if not isinstance(linears[0], int4.Int4Linear):
            return
        if not int4.joinable(sizes):  # the packing blocks would not line up
            self.packed, self.sz = int4.quantize(self.weight)
            return
        # groups run along the input, so the layers' int4 rows side by side are exactly the fused matrix's: joined,
        # not quantized again, and their packed rows become views of it (their scales stay contiguous copies)
        self.packed = torch.cat([lin.packed for lin in linears])  # (sum N, K/2) uint8
        self.sz = torch.cat([lin.scales_and_zeros for lin in linears], 1)  # (K/G, sum N, 2)
        for lin, rows in zip(linears, self.packed.split(sizes)):
            lin.packed = rows

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (M, K) in the model's dtype
        if self.packed is not None and x.shape[0] <= int4.SMALL_ROWS:
            return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, int4.GROUP, self.sz)
        return F.linear(x, self.weight)


class Lean:
    """The fused weights and constants of one model's decode step."""

    def __init__(self, model: Any):
        cfg, inner = model.config, model.model
        self.embed, self.head = inner.embed_tokens, model.get_output_embeddings()
        self.dtype = self.embed.weight.dtype
        self.H, self.H_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        dev = self.embed.weight.device  # the step's constants live where the weights do
        self.inv_freq = inner.rotary_emb.inv_freq.float().to(dev)
        self.scaling = inner.rotary_emb.attention_scaling
        self.eps = torch.tensor([cfg.rms_norm_eps], device=dev)
        self.sign = torch.ones(self.D, dtype=self.dtype, device=dev)  # rotate_half(x) = roll(x, D/2) * sign
        self.sign[: self.D // 2] = -1
        self.blocks = [(layer.input_layernorm.weight, _Fused(a.q_proj, a.k_proj, a.v_proj), _Fused(a.o_proj),
                        layer.post_attention_layernorm.weight, _Fused(m.gate_proj, m.up_proj), _Fused(m.down_proj))
                       for layer in inner.layers for a, m in [(layer.self_attn, layer.mlp)]]
        self.final_norm = inner.norm.weight

    def _norm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """RMSNorm: (B, C) -> (B, C). The scale 1/rms(x) is computed in fp32 (one reduction), x times it is
        rounded once to the model's dtype, then times the weight: transformers' result in four calls."""
        x32 = x.float() if x.dtype == torch.float64 else x  # transformers normalizes in fp32 whatever the dtype
        n = torch.linalg.vector_norm(x32, 2, -1, True, dtype=torch.float32)  # (B, 1)
        scale = torch.addcmul(self.eps, n, n, value=1 / x.shape[-1]).rsqrt_()  # (B, 1) fp32
        return torch.mul(x32, scale, out=torch.empty_like(x)) * w

    def _rotary(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (B, 1, 1, D) at positions pos (B,); sin carries rotate-half's sign on its first half."""
        freqs = pos[:, None].float() * self.inv_freq  # (B, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, None, :]  # (B, 1, 1, D)
        return (emb.cos() * self.scaling).to(self.dtype), (emb.sin() * self.scaling).to(self.dtype) * self.sign

    def step(self, ids: torch.Tensor, pos: torch.Tensor, cache: Any, mask: torch.Tensor | None) -> torch.Tensor:
        """ids, pos (B,) -> logits (B, V) in fp32 (or wider); appends one token per row to `cache`.
        mask (B, L+1): 1 where a cached column is attended, the new token included; None: every column."""
        B, H, H_kv, D = ids.shape[0], self.H, self.H_kv, self.D
        cos, sin = self._rotary(pos)
        attend = None if mask is None or bool(mask.all()) else mask.bool()[:, None, None, :]  # (B, 1, 1, L+1)
        x = self.embed(ids)  # (B, C)
        for i, (ln1, qkv, o, ln2, gate_up, down) in enumerate(self.blocks):
            h = qkv(self._norm(x, ln1)).view(B, H + 2 * H_kv, 1, D)  # (B, H + 2 H_kv, 1, D)
            qk, v = h[:, :H + H_kv], h[:, H + H_kv:]
            qk = torch.addcmul(qk * cos, qk.roll(D // 2, dims=-1), sin)  # RoPE on queries and keys at once
            keys, values = cache.update(qk[:, H:], v, i)  # (B, H_kv, L+1, D)
            att = F.scaled_dot_product_attention(qk[:, :H], keys, values, attn_mask=attend,
                                                 enable_gqa=H != H_kv)  # (B, H, 1, D)
            x = x + o(att.reshape(B, H * D))
            g, u = gate_up(self._norm(x, ln2)).chunk(2, dim=-1)  # (B, F) each
            x = x + down(F.silu(g) * u)
        out = self.head(self._norm(x, self.final_norm))  # a compact head picks its weights by the row count
        return out.to(torch.promote_types(out.dtype, torch.float32))  # (B, V), at least fp32


_built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> Lean | None (not copied with it)


def lean(model: Any) -> Lean | None:
    """The model's lean decode step (built on first use, again if the model's dtype changed), or None when it
    needs the transformers forward."""
    got = _built.get(model, False)
    if got is False or (got is not None and got.dtype != model.model.embed_tokens.weight.dtype):
        got = _built[model] = Lean(model) if supported(model) is None else None
    return got
