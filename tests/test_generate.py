"""Streaming decode: deltas, stop strings, EOS, UTF-8 safety, eviction during generation, batching."""
import torch

from docstream.backend.generate import _Detok, chat_ids, generate, generate_batch
from docstream.backend.sink_cache import SinkCache


def _cache(lm, window=200):
    return SinkCache(lm.model, sinks=4, window=window, max_pinned=16)


def _prompt(lm):
    return chat_ids(lm.tokenizer, [{"role": "user", "content": "Summarize: the cat sat on the mat."}])


def test_chat_ids_uses_chatml(tiny_lm):
    ids = _prompt(tiny_lm)
    text = tiny_lm.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nSummarize: the cat sat on the mat.<|im_end|>\n" in text


def test_deltas_concatenate_to_decoded_text(tiny_lm):
    lm, prompt = tiny_lm, _prompt(tiny_lm)
    c = _cache(lm)
    n0 = c.stream_position
    deltas = list(generate(lm, None, c, prompt, max_new_tokens=25, stop=()))
    gen_ids = []  # greedy reference by hand, with a plain full forward
    ids = torch.tensor([prompt])
    for _ in range(25):
        nxt = int(lm.model(input_ids=ids).logits[0, -1].argmax())
        if nxt == lm.tokenizer.eos_token_id:
            break
        gen_ids.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    assert "".join(deltas) == lm.tokenizer.decode(gen_ids, skip_special_tokens=True)
    assert len(deltas) > 1 and all(deltas)
    # everything fed is counted: prompt + all generated tokens but the last
    assert c.stream_position - n0 == len(prompt) + len(gen_ids) - 1
    c.truncate(c.stream_position - n0)
    assert c.stream_position == n0 and c.get_seq_length() == 0


def test_stops_on_stop_string_and_never_yields_it(tiny_lm):
    lm, prompt = tiny_lm, _prompt(tiny_lm)
    c = _cache(lm)
    snap = c.snapshot()
    full = "".join(generate(lm, None, c, prompt, max_new_tokens=30, stop=()))
    assert len(full) > 12
    stop = full[8:11]  # a string the greedy continuation will produce
    expect = full[:full.find(stop)]
    c.restore(snap)
    deltas = list(generate(lm, None, c, prompt, max_new_tokens=30, stop=("never-there", stop)))
    assert "".join(deltas) == expect
    assert all(stop not in d for d in deltas)


def test_detok_holds_back_partial_stop_and_utf8(tiny_lm):
    tok = tiny_lm.tokenizer
    text = "Café ☃ 日本語 ok.\nAfter"
    ids = tok.encode(text, add_special_tokens=False)
    d = _Detok(tok, ["\n"])
    out = [d.push(i) for i in ids if not d.stopped]
    assert all("\ufffd" not in s for s in out)
    assert "".join(out) == "Café ☃ 日本語 ok."
    d = _Detok(tok, ["ok.\nAf"])  # multi-token stop string
    out = []
    for i in ids:
        out.append(d.push(i))
        if d.stopped:
            break
        assert not "".join(out).endswith("ok"), "a possible stop prefix was yielded early"
    assert "".join(out) == "Café ☃ 日本語 "
    d = _Detok(tok, [])
    assert "".join(d.push(i) for i in ids) + d.flush() == text


def test_detok_with_sentence_stops_after_the_first_sentence(tiny_lm):
    """Notes and chapter lines end with their first sentence, its punctuation kept."""
    tok = tiny_lm.tokenizer
    d = _Detok(tok, ["\n"], sentence=True)
    out = [d.push(i) for i in tok.encode("Weena fell asleep by the fire. Then the Morlocks came.",
                                          add_special_tokens=False) if not d.stopped]
    assert d.stopped and "".join(out).strip() == "Weena fell asleep by the fire."


def test_stops_on_eos(tiny_lm):
    lm, prompt = tiny_lm, _prompt(tiny_lm)
    ids, gen = torch.tensor([prompt]), []
    for _ in range(6):
        gen.append(int(lm.model(input_ids=ids).logits[0, -1].argmax()))
        ids = torch.cat([ids, torch.tensor([[gen[-1]]])], 1)
    fake_eos = gen[4]  # make the 5th greedy token an EOS (via the generation config's list)
    cfg = lm.model.generation_config
    saved = cfg.eos_token_id
    try:
        cfg.eos_token_id = [lm.tokenizer.eos_token_id, fake_eos]
        out = "".join(generate(lm, None, _cache(lm), prompt, max_new_tokens=20, stop=()))
    finally:
        cfg.eos_token_id = saved
    assert out == lm.tokenizer.decode(gen[:gen.index(fake_eos)], skip_special_tokens=True)


def test_long_generation_evicts_and_stays_bounded(tiny_lm):
    lm, prompt = tiny_lm, _prompt(tiny_lm)
    c = SinkCache(lm.model, sinks=4, window=40, max_pinned=0)
    n = 0
    for _ in generate(lm, None, c, prompt, max_new_tokens=60, stop=()):
        n += 1
        assert c.get_seq_length() <= 44
    assert c.book.evicted > 0 and c.stream_position > 60


def test_generate_batch_equals_batch1(tiny_lm):
    lm = tiny_lm
    p1 = _prompt(lm)
    p2 = chat_ids(lm.tokenizer, [{"role": "user", "content": "Summarize: the dog ran in the park."}])
    assert len(p1) == len(p2)
    singles = []
    for p in (p1, p2):
        singles.append("".join(generate(lm, None, _cache(lm), p, max_new_tokens=15, stop=(".",))))
    c2 = SinkCache(lm.model, sinks=4, window=200, max_pinned=16)
    assert generate_batch(lm, None, c2, [p1, p2], max_new_tokens=15, stop=(".",)) == singles


def test_block_repeats_forbids_ngrams_of_the_output_and_of_texts_to_avoid():
    from docstream.backend.generate import block_repeats, ngram_index

    logits = torch.zeros(10)
    own = block_repeats(logits, [1, 2, 3, 5, 1, 2], 3)  # "1 2" was followed by 3: 3 is forbidden now
    assert own[3] == float("-inf") and torch.isfinite(own[torch.arange(10) != 3]).all()
    avoid = ngram_index([4, 1, 2, 7, 9, 1, 2, 8], 3)  # e.g. an earlier note: "1 2" went on with 7 and 8
    assert avoid[(1, 2)] == {7, 8}
    both = block_repeats(logits, [1, 2, 3, 5, 1, 2], 3, avoid)
    assert {i for i in range(10) if both[i] == float("-inf")} == {3, 7, 8}
    assert block_repeats(logits, [6, 6], 3, avoid) is logits  # nothing to block: logits untouched
    assert torch.equal(logits, torch.zeros(10))  # the caller's logits are never modified
