"""The lean decode step (`backend/lean.py`) against the transformers forward it replaces, on tiny random Llamas.

In float64 both paths agree to the fp32 rounding of RMSNorm (transformers normalizes in fp32), so logits match
to ~1e-7 and greedy texts are equal; in int4 (bf16 compute) they agree to bf16 rounding.
"""
import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from docstream.backend import forks as forks_mod
from docstream.backend import int4
from docstream.backend import sink_cache as sink_mod
from docstream.backend.compat import cache_kwargs
from docstream.backend.forks import decode_forks, fork
from docstream.backend.lean import lean, supported
from docstream.backend.model import compact_weights, tiny
from docstream.backend.sink_cache import SinkCache


@pytest.fixture(scope="module")
def lm64():
    lm = tiny(seed=5, layers=3)
    lm.model.double()
    return lm


def _stream(model, seed=0):
    """A sink cache with sinks, a pinned region and an evicting window."""
    g = torch.Generator().manual_seed(seed)
    V = model.config.vocab_size
    cache = SinkCache(model, sinks=4, window=48, max_pinned=8)
    cache.feed(model, torch.randint(5, V - 5, (1, 4), generator=g), logits=None)
    cache.set_pinned(model, torch.randint(5, V - 5, (6,), generator=g).tolist())
    for n in (30, 30):  # the second feed evicts: kept keys were re-rotated
        cache.feed(model, torch.randint(5, V - 5, (1, n), generator=g), logits=None)
    return cache


def test_one_token_feeds_equal_the_transformers_forward(lm64, monkeypatch):
    m = lm64.model
    assert supported(m) is None and lean(m) is not None
    cache = _stream(m)
    for tid in (11, 12, 13, 14):
        state = cache.snapshot()
        with monkeypatch.context() as mp:
            mp.setattr(sink_mod, "lean", lambda model: None)
            ref = cache.feed(m, torch.tensor([[tid]]))  # (1, V)
            ref_kv = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
        cache.restore(state)
        got = cache.feed(m, torch.tensor([[tid]]))
        assert torch.allclose(got, ref.to(got.dtype), atol=1e-6), (got - ref).abs().max()
        for layer, (k, v) in zip(cache.layers, ref_kv):
            assert torch.allclose(layer.keys, k, atol=1e-6) and torch.allclose(layer.values, v, atol=1e-6)
    assert cache.stream_position == 4 + 60 + 4


def test_a_ragged_batch_decodes_the_same_through_both_paths(lm64, monkeypatch):
    m, tok = lm64.model, lm64.tokenizer
    cache = _stream(m, seed=1)
    fs = [fork(m, cache, list(range(20, 23 + 4 * k)), max_new_tokens=6 + k, recent=8 * k) for k in range(4)]
    assert len({f.length for f in fs}) == 4, "rows must be ragged (left padding in the batch)"
    got, n = decode_forks(m, tok, copy.deepcopy(fs), no_repeat_ngram=3, width=3)
    monkeypatch.setattr(forks_mod, "lean", lambda model: None)
    ref, n_ref = decode_forks(m, tok, copy.deepcopy(fs), no_repeat_ngram=3, width=3)
    assert got == ref and n == n_ref > 0


def test_int4_decode_step_uses_the_int4_values_in_fused_projections(tiny_lm):
    m = int4.int4_weights(copy.deepcopy(tiny_lm.model).to(torch.bfloat16))
    cache = _stream(m, seed=2)
    state = cache.snapshot()
    x = torch.tensor([[17]])
    ref = m(input_ids=x, position_ids=cache.next_positions(1), use_cache=True,
            **cache_kwargs(m, cache)).logits[:, -1].float()
    cache.restore(state)
    got = cache.feed(m, x)  # the first lean step: builds the fused int4 weights
    qkv, gate_up = lean(m).blocks[0][1], lean(m).blocks[0][4]  # q|k|v quantized again, gate|up joined
    for fused in (qkv, gate_up):  # either way, what quantizing the fused matrix gives
        packed, sz = int4.quantize(fused.weight)
        assert torch.equal(fused.packed, packed) and torch.equal(fused.sz, sz)
    mlp = m.model.layers[0].mlp
    assert mlp.gate_proj.packed.data_ptr() == gate_up.packed.data_ptr()  # the layer's rows: a view
    a = m.model.layers[0].self_attn
    joined = int4.joinable([p.out_features for p in (a.q_proj, a.k_proj, a.v_proj)])  # by the tiny model's sizes
    assert (a.q_proj.packed.data_ptr() == qkv.packed.data_ptr()) == joined
    assert got.argmax(-1).item() == ref.argmax(-1).item()
    assert ((got - ref).abs().max() / ref.abs().max()).item() < 0.05  # bf16 rounding, same int4 values
    cache.restore(state)  # the transformers path computes as it did before the first lean step
    again = m(input_ids=x, position_ids=cache.next_positions(1), use_cache=True,
              **cache_kwargs(m, cache)).logits[:, -1].float()
    assert torch.equal(again, ref)


def test_int4_rows_join_only_in_whole_packing_blocks():
    ws = [torch.randn(n, 64, dtype=torch.bfloat16) for n in (128, 64, 32)]
    for parts in (ws, ws[1:], [ws[2], ws[1]]):  # 128|64|32 and 64|32 join; 32|64 does not
        joined = torch.cat([int4.quantize(w)[0] for w in parts])
        ok = torch.equal(joined, int4.quantize(torch.cat(parts))[0])
        assert ok == int4.joinable([w.shape[0] for w in parts]), [w.shape for w in parts]
    assert int4.joinable([64, 16]) and not int4.joinable([16, 64])


def test_plain_layers_become_views_of_the_fused_matrix(tiny_lm):
    m = copy.deepcopy(tiny_lm.model)
    before = m(input_ids=torch.tensor([[5, 6, 7]])).logits
    fused = lean(m).blocks[0][1].weight
    a = m.model.layers[0].self_attn
    assert a.q_proj.weight.data_ptr() == fused.data_ptr()  # no second copy of the weights
    assert torch.equal(m(input_ids=torch.tensor([[5, 6, 7]])).logits, before)


def test_other_models_keep_the_transformers_path(tiny_lm):
    cfg = LlamaConfig(vocab_size=tiny_lm.model.config.vocab_size, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, attention_bias=True)
    biased = LlamaForCausalLM(cfg).eval()
    assert "biases" in supported(biased) and lean(biased) is None
    c = SinkCache(biased, sinks=2, window=32, max_pinned=0)
    c.feed(biased, torch.tensor([[5, 6, 7, 8]]), logits=None)
    assert c.feed(biased, torch.tensor([[9]])).shape == (1, cfg.vocab_size)
    q = compact_weights(copy.deepcopy(tiny_lm.model), "fp16w")
    assert "not a plain or int4 matrix" in supported(q) and lean(q) is None
