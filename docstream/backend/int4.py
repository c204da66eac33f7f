"""int4 weights for decoding: the `int4` weight format (CPU).

Design choices:
- Decoding a token reads every weight once: fp32 reads ~540 MB, bf16 ~270 MB, int4 ~75 MB (+28 MB for the
  int8 output head, 49,152 × 576, a fifth of the model).
- Groups of 32 weights along the input dimension, each with its own scale and offset (asymmetric, min/max):
  the layout of the GGUF's own Q4_1 blocks the embedded model ships as, so requantizing its dequantized
  weights gives back the same 4-bit values (up to the bf16 rounding of scale and offset).
- torch's CPU kernels (`_convert_weight_to_int4pack_for_cpu`, `_weight_int4pack_mm_for_cpu`) take bf16 inputs,
  so the model computes in bf16. They win for a decode step of a few rows and lose for many (over 30 layers'
  gate|up weights: int4 166 / 540 / 1,175 us at 1 / 8 / 16 rows, bf16 641 / 580 / 579 us; the int8 head 5.1 /
  13.6 / 20.3 ms at 4 / 8 / 16 rows, bf16 9.5 / 9.1 / 9.9 ms), so every layer keeps its bf16 weight too
  (+100 MB next to 270 MB) and `forward` picks by the number of rows. The compact weights serve up to
  `SMALL_ROWS` = 16 rows, the reader's note batch, although bf16 would be faster from 8: a row's result must
  not depend on how many rows share its step (a document read in a batch writes the notes it writes alone).
- The output head (tied to the embeddings) is not Q4_1 in the GGUF (up to 30 distinct values in a block of 32):
  requantized to int4 it cost perplexity, so it gets int8 weights, one scale per row (`Int8Linear`). The
  embedding lookup stays bf16 (a lookup reads one row a token).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

GROUP = 32  # weights per scale/offset pair: a GGUF Q4_1 block
SMALL_ROWS = 16  # at most this many rows go through the compact kernels; more take the bf16 weight
PACK_ROWS = 64  # `_convert_weight_to_int4pack_for_cpu` lays out output rows in blocks of this many


def quantize(w: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed int4 weight, scales_and_zeros (K/group, N, 2) bf16) of a weight (N, K): per group of `group`
    inputs, q = round((w - min) / scale) in 0..15 with scale = (max - min) / 15."""
    n, k = w.shape
    assert k % group == 0, f"input size {k} is not a multiple of {group}"
    wg = w.float().reshape(n, k // group, group)  # (N, K/G, G)
    lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
    scale = ((hi - lo) / 15).clamp(min=1e-8)
    q = ((wg - lo) / scale).round().clamp(0, 15).reshape(n, k).to(torch.int32)
    zeros = lo + scale * 8  # the kernel computes (q - 8) * scale + zero
    sz = torch.cat([scale, zeros], -1).transpose(0, 1).contiguous().to(torch.bfloat16)  # (K/G, N, 2)
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1), sz


def joinable(rows: list[int]) -> bool:
    """Whether packed weights of these output sizes, joined along N, equal the packing of the joined weight:
    the kernel packs rows in blocks of `PACK_ROWS`, so every part but the last must fill whole blocks."""
    return all(n % PACK_ROWS == 0 for n in rows[:-1])


def dequantize(packed_q: torch.Tensor, sz: torch.Tensor, k: int, group: int = GROUP) -> torch.Tensor:
    """The weight (N, K) the kernel multiplies by, recovered through the kernel itself (an identity input)."""
    eye = torch.eye(k, dtype=torch.bfloat16)
    return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, packed_q, group, sz).t().contiguous()


class _FewRows(nn.Module):
    """A Linear layer whose compact weights serve calls of at most `SMALL_ROWS` rows; more take its bf16 weight."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias  # bf16 (N, K) (the head's: tied to the embeddings)

    def small(self, rows: torch.Tensor) -> torch.Tensor:  # (M, K) bf16 -> (M, N)
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # (B*T, K)
        if rows.shape[0] > SMALL_ROWS:
            return nn.functional.linear(x, self.weight, self.bias)
        out = self.small(rows.to(torch.bfloat16).contiguous())  # (B*T, N)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


class Int4Linear(_FewRows):
    """int4 weights in groups of `GROUP` for a few rows."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear)
        packed, sz = quantize(linear.weight.detach())
        self.register_buffer("packed", packed, persistent=False)
        self.register_buffer("scales_and_zeros", sz, persistent=False)

    def small(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, GROUP, self.scales_and_zeros)


class Int8Linear(_FewRows):
    """int8 weights, one scale per output row, for a few rows: the output head, which the GGUF does not hold as
    Q4_1 blocks."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear)
        w = linear.weight.detach().float()
        scale = (w.abs().amax(-1) / 127).clamp(min=1e-8)  # (N,)
        self.register_buffer("q", (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8), persistent=False)
        self.register_buffer("scale", scale.to(torch.bfloat16), persistent=False)

    def small(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(rows, self.q, self.scale)


def int4_weights(model: Any) -> Any:
    """Every projection of a bf16 model's layers → `Int4Linear`, the output head → `Int8Linear`, in place."""
    head = model.get_output_embeddings()
    todo = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if isinstance(child, nn.Linear)]
    for parent, name, child in todo:
        assert child.weight.dtype == torch.bfloat16, child.weight.dtype
        small = Int8Linear(child) if child is head or child.in_features % GROUP else Int4Linear(child)
        setattr(parent, name, small)
    return model
