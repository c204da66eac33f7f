"""Batched decoding of forks (`stream/batch.py`) against one-at-a-time decoding, on the tiny random Llama.

In float64 the left-padded batch and the unpadded batch-1 runs agree to ~1e-15, so greedy texts must be equal.
"""
import pytest
import torch

from docstream.backend.forks import decode_forks, fork, prompt_fork
from docstream.backend.generate import generate
from docstream.backend.model import tiny
from docstream.backend.sink_cache import SinkCache


@pytest.fixture(scope="module")
def lm64():
    lm = tiny(seed=3)
    lm.model.double()
    return lm


def _forks_and_refs(lm, n=5, window=96, stops=((), ("e",))):
    g = torch.Generator().manual_seed(0)
    V = lm.model.config.vocab_size
    cache = SinkCache(lm.model, sinks=4, window=window, max_pinned=16)
    cache.feed(lm.model, torch.randint(5, V - 5, (1, 4), generator=g), logits=None)
    cache.set_pinned(lm.model, torch.randint(5, V - 5, (9,), generator=g).tolist())
    forks, refs = [], []
    for k in range(n):
        cache.feed(lm.model, torch.randint(5, V - 5, (1, 17 + 9 * k), generator=g), logits=None)  # evicts later on
        prompt = torch.randint(5, V - 5, (3 + k,), generator=g).tolist()
        max_new, stop = 4 + 3 * k, stops[k % len(stops)]
        cache.make_room(len(prompt) + max_new)  # the batch-1 reference must not evict while it decodes
        state = cache.snapshot()
        refs.append("".join(generate(lm.model, lm.tokenizer, cache, prompt, max_new_tokens=max_new, stop=stop,
                                     no_repeat_ngram=3)))
        cache.restore(state)
        before = cache.stream_position
        forks.append(fork(lm.model, cache, prompt, max_new, stop))
        assert cache.stream_position == before, "a fork leaves the stream where it was"
    return forks, refs


def test_batched_forks_equal_one_at_a_time(lm64):
    forks, refs = _forks_and_refs(lm64)
    assert len({f.length for f in forks}) > 1, "rows must be ragged for this test to mean anything"
    texts, n = decode_forks(lm64.model, lm64.tokenizer, forks, no_repeat_ngram=3)
    assert texts == refs
    assert 0 < n <= sum(f.max_new_tokens for f in forks)


def test_rows_leave_the_batch_at_their_own_limits(lm64):
    forks, refs = _forks_and_refs(lm64, n=3)
    texts, _ = decode_forks(lm64.model, lm64.tokenizer, forks[::-1], no_repeat_ngram=3)
    assert texts == refs[::-1]
    one, _ = decode_forks(lm64.model, lm64.tokenizer, forks[:1], no_repeat_ngram=3)
    assert one == refs[:1]


def test_finished_rows_are_refilled_from_waiting_forks(lm64):
    """`width`: fewer rows than forks; each finished row takes the next fork (continuous batching), and
    every text equals the one-at-a-time reference."""
    forks, refs = _forks_and_refs(lm64, n=5)
    for width in (1, 2, 3):
        texts, n = decode_forks(lm64.model, lm64.tokenizer, forks, no_repeat_ngram=3, width=width)
        assert texts == refs, width


def test_prompt_fork_equals_a_fresh_completion(lm64):
    ids = list(range(100, 140))
    cache = SinkCache(lm64.model, sinks=0, window=64, max_pinned=0)
    ref = "".join(generate(lm64.model, lm64.tokenizer, cache, ids, max_new_tokens=8, stop=()))
    texts, _ = decode_forks(lm64.model, lm64.tokenizer, [prompt_fork(lm64.model, ids, 8)])
    assert texts == [ref]


def test_a_fork_of_the_recent_window_keeps_positions(lm64):
    """`recent=` drops the older window from a fork: shorter KV, same next position, same prompt logits
    (the prompt was computed with the whole window), and it decodes."""
    g = torch.Generator().manual_seed(1)
    V = lm64.model.config.vocab_size
    cache = SinkCache(lm64.model, sinks=4, window=128, max_pinned=8)
    cache.feed(lm64.model, torch.randint(5, V - 5, (1, 4), generator=g), logits=None)
    cache.set_pinned(lm64.model, torch.randint(5, V - 5, (6,), generator=g).tolist())
    cache.feed(lm64.model, torch.randint(5, V - 5, (1, 100), generator=g), logits=None)
    prompt = [11, 12, 13]
    short = fork(lm64.model, cache, prompt, 6, recent=20)
    full = fork(lm64.model, cache, prompt, 6)
    assert short.length == 4 + 6 + 20 + 3 and full.length == 4 + 6 + 100 + 3 and short.position == full.position
    assert torch.allclose(short.logits, full.logits)
    for (ks, _), (kf, _) in zip(short.kv, full.kv):
        assert torch.equal(ks[:, :, :10], kf[:, :, :10]) and torch.equal(ks[:, :, 10:], kf[:, :, -23:])
    texts, n = decode_forks(lm64.model, lm64.tokenizer, [short, full])
    assert n > 0 and all(texts)


def test_text_fed_with_the_prompt_equals_feeding_it_first(lm64):
    """`text_ids=`: a chunk and its note prompt in one forward pass give the fork and the stream that feeding
    the chunk first would have given, after one eviction for both (the chunk stays, the prompt leaves)."""
    g = torch.Generator().manual_seed(2)
    V = lm64.model.config.vocab_size

    def start():
        c = SinkCache(lm64.model, sinks=4, window=64, max_pinned=8)
        c.feed(lm64.model, torch.randint(5, V - 5, (1, 4), generator=torch.Generator().manual_seed(9)), logits=None)
        c.feed(lm64.model, torch.arange(20, 70).unsqueeze(0), logits=None)  # fills most of the window
        return c

    text, prompt = torch.randint(5, V - 5, (30,), generator=g).tolist(), [11, 12, 13]
    a, b = start(), start()
    a.make_room(len(text) + len(prompt))
    a.feed(lm64.model, torch.tensor([text]), logits=None)
    fa = fork(lm64.model, a, prompt, 6)
    fb = fork(lm64.model, b, prompt, 6, text_ids=text)
    assert a.spans() == b.spans() and a.stream_position == b.stream_position
    assert fa.length == fb.length and fa.position == fb.position
    assert torch.allclose(fa.logits, fb.logits, atol=1e-9)
    for (ka, va), (kb, vb) in zip(fa.kv, fb.kv):
        assert torch.allclose(ka, kb, atol=1e-9) and torch.allclose(va, vb, atol=1e-9)
    assert decode_forks(lm64.model, lm64.tokenizer, [fa])[0] == decode_forks(lm64.model, lm64.tokenizer, [fb])[0]


def test_forks_sharing_an_avoid_dict_do_not_copy_each_other(lm64):
    """Two copies of one fork decode the same text; given one shared `avoid` dict, the second row may not
    repeat a 3-gram the first has just written, so they part ways — and neither repeats the avoided text."""
    import copy

    from docstream.backend.generate import ngram_index

    f = _forks_and_refs(lm64, n=1)[0][0]
    f.max_new_tokens, f.stop = 12, ()
    twins = [f, copy.copy(f)]
    same, _ = decode_forks(lm64.model, lm64.tokenizer, twins, no_repeat_ngram=3)
    assert same[0] == same[1]
    shared: dict = {}
    twins[0].avoid = twins[1].avoid = shared
    apart, _ = decode_forks(lm64.model, lm64.tokenizer, twins, no_repeat_ngram=3)
    assert apart[0] == same[0] and apart[1] != same[1]  # the first row wrote first; the second had to differ
    twins[0].avoid = twins[1].avoid = None
    avoid = ngram_index(lm64.tokenizer.encode(same[0], add_special_tokens=False), 3)
    for t in twins:
        t.avoid = avoid  # an earlier note's words: neither row may write them again
    other, _ = decode_forks(lm64.model, lm64.tokenizer, [f], no_repeat_ngram=3)
    assert other[0] != same[0]


def test_a_row_that_gives_up_stops_and_frees_its_slot(lm64):
    """`give_up`: the row stops at the first text the test rejects (keeping that text); its slot goes to the
    next fork, whose text is unchanged; fewer tokens are decoded."""
    forks, refs = _forks_and_refs(lm64, n=4, stops=((),))
    _, full = decode_forks(lm64.model, lm64.tokenizer, forks, no_repeat_ngram=3, width=2)
    long = max(range(4), key=lambda i: len(refs[i]))
    assert len(refs[long]) >= 3
    cut = refs[long][:2]
    forks[long].give_up = lambda text: text.startswith(cut)
    texts, fewer = decode_forks(lm64.model, lm64.tokenizer, forks, no_repeat_ngram=3, width=2)
    assert texts[long] != refs[long] and refs[long].startswith(texts[long]) and texts[long].startswith(cut)
    assert [t for i, t in enumerate(texts) if i != long] == [r for i, r in enumerate(refs) if i != long]
    assert fewer < full
