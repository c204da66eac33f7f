"""SinkCache: re-rotation, bounds, equivalence with a full cache, pinned region, truncate/snapshot, batching."""
import random
import warnings

import pytest
import torch
from transformers import DynamicCache

from docstream.backend.compat import cache_kwargs
from docstream.backend.forks import decode_forks, fork
from docstream.backend.generate import generate
from docstream.backend.model import tiny
from docstream.backend.sink_cache import SinkCache
from docstream.errors import SettingsError

V = 2000  # token ids used in tests


def ids_(n, seed=0, B=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, V, (B, n), generator=g)


def fresh(model, ids):
    """A plain DynamicCache filled with ids at positions 0..n-1."""
    d = DynamicCache(config=model.config)
    model(input_ids=ids, use_cache=True, **cache_kwargs(model, d))
    return d


def stream(cache, model, ids, chunk):
    for i in range(0, ids.shape[1], chunk):
        cache.feed(model, ids[:, i:i + chunk], logits=None)


def kept_ids(cache, ids):
    """The stream tokens the cache holds, in cache order (no pinned region)."""
    return torch.cat([ids[:, a:b] for a, b in cache.spans()], dim=1)


def test_layer0_keys_after_eviction_equal_fresh(tiny_lm):
    m = tiny_lm.model
    ids = ids_(300)
    c = SinkCache(m, sinks=4, window=64, max_pinned=0)
    stream(c, m, ids, chunk=23)
    assert c.spans() == [(0, 4), (300 - 64, 300)]
    d = fresh(m, kept_ids(c, ids))
    assert c.get_seq_length() == d.get_seq_length() == 68
    torch.testing.assert_close(c.layers[0].keys, d.layers[0].keys, atol=1e-4, rtol=0)
    torch.testing.assert_close(c.layers[0].values, d.layers[0].values, atol=1e-5, rtol=0)
    # deeper layers attended to evicted tokens: their keys must differ (the test above is not vacuous)
    assert (c.layers[1].keys - d.layers[1].keys).abs().max() > 1e-3


def test_rerotation_does_not_apply_attention_scaling_twice():
    lm = tiny(seed=1)
    m = lm.model
    m.model.rotary_emb.attention_scaling = 1.7  # as with YaRN/longrope: cos/sin carry a scale
    ids = ids_(200, seed=1)
    c = SinkCache(m, sinks=2, window=40, max_pinned=0)
    stream(c, m, ids, chunk=17)
    d = fresh(m, kept_ids(c, ids))
    torch.testing.assert_close(c.layers[0].keys, d.layers[0].keys, atol=1e-4, rtol=0)


def test_bf16_rerotation_close():
    m = tiny(seed=0).model.to(torch.bfloat16)
    ids = ids_(200, seed=2)
    c = SinkCache(m, sinks=4, window=48, max_pinned=0)
    stream(c, m, ids, chunk=16)
    assert c.layers[0].keys.dtype == torch.bfloat16
    d = fresh(m, kept_ids(c, ids))
    err = (c.layers[0].keys.float() - d.layers[0].keys.float()).abs().max()
    assert err < 0.05 * d.layers[0].keys.float().abs().max()


def test_length_bound_under_random_feeds(tiny_lm):
    m = tiny_lm.model
    rng = random.Random(0)
    c = SinkCache(m, sinks=3, window=50, max_pinned=12)
    pos = 0
    for step in range(40):
        op = rng.random()
        if op < 0.1 and c.stream_position >= 3:
            c.set_pinned(m, ids_(rng.randint(0, 12), seed=step)[0])
        elif op < 0.2 and c.n_window:
            n = rng.randint(1, c.n_window)
            c.truncate(n)
            pos -= n
        else:
            n = rng.randint(1, c.max_feed())
            c.feed(m, ids_(n, seed=100 + step), logits=None)
            pos += n
        assert c.get_seq_length() <= c.sinks + c.n_pinned + c.window <= 3 + 12 + 50
        assert c.n_window <= 50 and c.stream_position == pos
        assert sum(b - a for a, b in c.spans()) + c.n_pinned == c.get_seq_length()
        assert c.spans()[-1][1] == pos
        assert c.next_positions(3).tolist() == [list(range(c.get_seq_length(), c.get_seq_length() + 3))]


def test_logits_equal_full_forward_while_it_fits(tiny_lm):
    m = tiny_lm.model
    ids = ids_(120, seed=3)
    full = m(input_ids=ids).logits  # (1, 120, V)
    c = SinkCache(m, sinks=4, window=116, max_pinned=0)
    outs = [c.feed(m, ids[:, i:i + 30], logits="all") for i in range(0, 120, 30)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-4, rtol=1e-4)
    assert c.spans() == [(0, 120)]
    # one more token forces an eviction: logits now differ from the full-context ones
    full2 = m(input_ids=torch.cat([ids, ids[:, :1]], 1)).logits[:, -1]
    last = c.feed(m, ids[:, :1], logits="last")
    assert c.spans() == [(0, 4), (5, 121)]
    assert (last - full2).abs().max() > 1e-4


def test_one_token_feeds_write_in_place(tiny_lm):
    """A decode step writes one slot of the layer's buffer (no copy of the cache), and the result equals the
    fresh forward of the same tokens."""
    m = tiny_lm.model
    ids = ids_(40, seed=11)
    c = SinkCache(m, sinks=4, window=64, max_pinned=0)
    c.feed(m, ids[:, :30], logits=None)
    c.feed(m, ids[:, 30:31])
    where = [layer.keys.data_ptr() for layer in c.layers]
    for i in range(31, 40):
        c.feed(m, ids[:, i:i + 1])
    assert [layer.keys.data_ptr() for layer in c.layers] == where
    torch.testing.assert_close(c.layers[1].keys, fresh(m, ids).layers[1].keys, atol=1e-4, rtol=0)


def test_eviction_and_truncation_stay_in_the_layers_buffer(tiny_lm):
    """Evicting (a chunk that overflows the window) and truncating (a note prompt taken back) move slots inside
    the layer's own buffer, so the next append writes there too instead of copying the layer; the keys still
    equal a fresh forward of the tokens kept."""
    m = tiny_lm.model
    ids = ids_(120, seed=12)
    c = SinkCache(m, sinks=4, window=64, max_pinned=0)
    c.feed(m, ids[:, :60], logits=None)
    bufs = [layer._buf[0] for layer in c.layers]  # held: a freed buffer's address could be handed out again
    c.feed(m, ids[:, 60:80], logits=None)  # evicts 16
    c.feed(m, ids[:, 80:90], logits=None)
    c.truncate(10)
    c.feed(m, ids[:, 90:100], logits=None)  # evicts again
    assert c.book.evicted > 16 and all(layer._buf[0] is b for layer, b in zip(c.layers, bufs))
    assert [layer.keys.data_ptr() for layer in c.layers] == [b.data_ptr() for b in bufs]
    d = fresh(m, kept_ids(c, torch.cat([ids[:, :80], ids[:, 90:100]], dim=1)))  # the stream, note taken back
    torch.testing.assert_close(c.layers[0].keys, d.layers[0].keys, atol=1e-4, rtol=0)
    torch.testing.assert_close(c.layers[0].values, d.layers[0].values, atol=1e-5, rtol=0)


def test_pinned_survives_evictions_and_can_be_replaced(tiny_lm):
    m = tiny_lm.model
    doc, pin1, pin2 = ids_(400, seed=4), ids_(10, seed=5), ids_(6, seed=6)
    c = SinkCache(m, sinks=4, window=60, max_pinned=16)
    c.feed(m, doc[:, :30], logits=None)  # sinks + some window
    c.set_pinned(m, pin1[0])
    assert c.n_pinned == 10 and c.get_seq_length() == 4 + 10 + 26

    def check(pin):
        expect = torch.cat([doc[:, :4], pin] + [doc[:, a:b] for a, b in c.book.window], 1)
        d = fresh(m, expect)
        torch.testing.assert_close(c.layers[0].keys, d.layers[0].keys, atol=1e-4, rtol=0)
        # pinned KV attends to the sinks only: every layer equals a fresh forward of sinks + pinned
        s = fresh(m, torch.cat([doc[:, :4], pin], 1))
        P = 4 + pin.shape[1]
        for lc, ls in zip(c.layers, s.layers):
            torch.testing.assert_close(lc.keys[:, :, :P], ls.keys, atol=1e-4, rtol=0)
            torch.testing.assert_close(lc.values[:, :, :P], ls.values, atol=1e-4, rtol=0)

    check(pin1)
    stream(c, m, doc[:, 30:], chunk=37)  # many evictions
    assert c.n_pinned == 10 and c.spans()[0] == (0, 4) and c.spans()[-1] == (340, 400)
    check(pin1)
    c.set_pinned(m, pin2[0])  # shorter: window keys move left by 4
    check(pin2)
    computed = []
    inner = m.model.forward
    m.model.forward = lambda *a, **k: computed.append(k["input_ids"].shape[1]) or inner(*a, **k)
    try:
        pin3 = torch.cat([pin2[:, :4], ids_(7, seed=9)], 1)  # shares pin2's first 4 tokens
        c.set_pinned(m, pin3[0])
    finally:
        del m.model.forward
    assert computed == [7], "the shared prefix's keys are kept, only the new tokens computed"
    check(pin3)
    c.set_pinned(m, [])  # removing it entirely
    assert c.n_pinned == 0
    check(pin2[:, :0])


def test_set_pinned_before_any_window():
    m = tiny(seed=0).model
    c = SinkCache(m, sinks=0, window=32, max_pinned=8)
    pin = ids_(8, seed=7)
    c.set_pinned(m, pin)
    c.feed(m, ids_(50, seed=8)[:, :30], logits=None)
    d = fresh(m, torch.cat([pin, ids_(50, seed=8)[:, :30]], 1))
    torch.testing.assert_close(c.layers[1].keys, d.layers[1].keys, atol=1e-4, rtol=0)
    with pytest.raises(SettingsError, match="max_pinned"):
        c.set_pinned(m, ids_(9))


def test_truncate_and_snapshot_round_trip(tiny_lm):
    m = tiny_lm.model
    doc, note = ids_(200, seed=9), ids_(40, seed=10)
    c = SinkCache(m, sinks=4, window=64, max_pinned=8)
    stream(c, m, doc[:, :50], chunk=25)
    c.set_pinned(m, ids_(5, seed=11))
    snap = c.snapshot()
    c.feed(m, note[:, :12], logits=None)  # fits: no eviction
    c.truncate(12)
    for lc, (k, v) in zip(c.layers, snap["kv"]):
        assert torch.equal(lc.keys, k) and torch.equal(lc.values, v)
    assert c.book == snap["book"]
    # with eviction during the note: truncation keeps the bookkeeping right
    before = c.stream_position
    c.feed(m, note[:, :30], logits=None)
    assert c.spans() == [(0, 4), (16, 80)]
    c.truncate(c.stream_position - before)
    assert c.stream_position == 50 and c.spans() == [(0, 4), (16, 50)] and c.get_seq_length() == 4 + 5 + 34
    # restore brings back the exact state, and the stream continues identically from it
    c.restore(snap)
    a = c.feed(m, doc[:, 50:80], logits="all")
    state = c.snapshot()
    c.restore(snap)
    b = c.feed(m, doc[:, 50:80], logits="all")
    assert torch.equal(a, b) and c.book == state["book"]
    assert c.kv_bytes() == 2 * 2 * (1 * 2 * c.get_seq_length() * 16) * 4  # layers*(K,V)*(B*H*T*D)*fp32


def test_batch2_lockstep_equals_two_batch1_runs(tiny_lm):
    m = tiny_lm.model
    docs, pins = ids_(160, seed=12, B=2), ids_(6, seed=13, B=2)
    c2 = SinkCache(m, sinks=4, window=40, max_pinned=8)
    out2 = []
    for i in range(0, 160, 20):
        out2.append(c2.feed(m, docs[:, i:i + 20], logits="last"))
        if i == 40:
            c2.set_pinned(m, pins)
    for r in range(2):
        c1 = SinkCache(m, sinks=4, window=40, max_pinned=8)
        for j, i in enumerate(range(0, 160, 20)):
            o = c1.feed(m, docs[r:r + 1, i:i + 20], logits="last")
            torch.testing.assert_close(o[0], out2[j][r], atol=1e-4, rtol=1e-4)
            if i == 40:
                c1.set_pinned(m, pins[r])
        torch.testing.assert_close(c1.layers[1].keys[0], c2.layers[1].keys[r], atol=1e-4, rtol=0)


def test_settings_errors(tiny_lm):
    m = tiny_lm.model  # context 2048
    with pytest.raises(SettingsError, match="window"):
        SinkCache(m, sinks=4, window=2000, max_pinned=512)
    c = SinkCache(m, sinks=4, window=16, max_pinned=0)
    assert c.max_feed() == 20 and c.room() == 20
    with pytest.raises(SettingsError, match="at most 16"):
        c.feed(m, ids_(21), logits=None)
    c.feed(m, ids_(10), logits=None)
    assert c.room() == 10 and c.max_feed() == 16


def test_engine_calls_raise_no_warning(tiny_lm):
    """Every forward the engine makes (plain, sink-cache feed, pinned region, fork decode, generate) under
    warnings-as-errors: a deprecation in a new transformers release fails here, not on a user's stderr."""
    m, tok = tiny_lm.model, tiny_lm.tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh(m, ids_(8))
        c = SinkCache(m, sinks=4, window=64, max_pinned=16)
        stream(c, m, ids_(100), chunk=32)
        c.set_pinned(m, ids_(10, seed=1)[0].tolist())
        texts, n = decode_forks(m, tok, [fork(m, c, ids_(6, seed=2)[0].tolist(), max_new_tokens=4)])
        out = "".join(generate(m, tok, c, ids_(5, seed=3), max_new_tokens=4, stop=()))
    assert n >= 1 and len(texts) == 1 and isinstance(out, str)
