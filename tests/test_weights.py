"""Weight formats: the compact CPU formats keep the model's outputs, raise no warning, and are part of the index
identity; bad choices are one-line errors; `bench engine` measures them side by side."""
import copy
import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

from docstream.backend.forks import decode_forks, fork
from docstream.backend.model import compact_weights, weight_format
from docstream.backend.sink_cache import SinkCache
from docstream.cli.main import app
from docstream.errors import SettingsError
from docstream.settings import ReadSettings

runner = CliRunner()


def _ids(n, seed=0):
    return torch.randint(10, 2000, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", ["fp16w", "int8"])
def test_compact_weights_keep_the_next_token_and_raise_no_warning(tiny_lm, fmt):
    base = tiny_lm.model
    m = copy.deepcopy(base)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compact_weights(m, fmt)
        # every nn.Linear replaced, the output head included
        assert not any(isinstance(mod, torch.nn.Linear) for mod in m.modules())
        x = _ids(48)
        ref = base(input_ids=x).logits  # (1, T, V)
        got = m(input_ids=x).logits
        c = SinkCache(m, sinks=4, window=64, max_pinned=8)
        c.feed(m, x, logits=None)
        texts, n = decode_forks(m, tiny_lm.tokenizer, [fork(m, c, _ids(6, 1)[0].tolist(), max_new_tokens=4)])
    assert n >= 1 and len(texts) == 1
    err = ((got - ref).abs().max() / ref.abs().max()).item()
    agree = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    if fmt == "fp16w":  # fp16 weights, fp32 compute: all but rounding
        assert err < 2e-3 and agree > 0.95, (err, agree)
    else:  # int8: close, not equal
        assert err < 0.1 and agree > 0.8, (err, agree)


def test_weight_format_is_decided_without_torch_and_checked(monkeypatch):
    from docstream.backend import model

    for native, fmt in ((True, "int4"), (False, "fp16w")):  # bf16 compute only where the CPU has it natively
        monkeypatch.setattr(model, "cpu_has_bf16", lambda native=native: native)
        assert weight_format("auto", "cpu") == fmt
    assert weight_format("auto", "cuda") == "bf16"
    assert weight_format("float32", "cpu") == "fp32"
    with pytest.raises(SettingsError, match="CPU only"):
        weight_format("int8", "cuda")
    with pytest.raises(SettingsError, match="CPU only"):
        weight_format("int4", "cuda")
    with pytest.raises(SettingsError, match="unknown dtype 'int3' — use auto, fp32, fp16w, int8, bf16, fp16, int4"):
        weight_format("int3", "cpu")


def test_the_weight_format_is_part_of_the_index_identity(home, tiny_dir, short_text):
    import docstream
    from docstream.backend import model

    paths = {fmt: docstream.open(short_text, model=str(tiny_dir), dtype=fmt, device="cpu",
                                   window=512).index_path
             for fmt in ("fp32", "fp16w", "int8", "bf16", "int4")}
    assert len(set(paths.values())) == 5
    auto = "int4" if model.cpu_has_bf16() else "fp16w"
    assert docstream.open(short_text, model=str(tiny_dir), device="cpu", window=512).index_path == paths[auto]
    # an fp32 index made before weight formats existed (no "weights" key in its settings) is still found
    assert "weights" not in ReadSettings(weights="fp32").to_dict()
    assert ReadSettings(weights="int8").to_dict()["weights"] == "int8"


def test_bad_weight_formats_are_one_line_errors(home, tiny_dir, short_text):
    for args, says in ((["--dtype", "int8", "--device", "cuda"], "runs on the CPU only — use --dtype bf16"),
                       (["--dtype", "int3"], "unknown dtype 'int3'")):
        res = runner.invoke(app, ["read", str(short_text), "-m", str(tiny_dir), *args])
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], res.stderr


def test_bench_engine_measures_every_format_side_by_side(home, tiny_dir, short_text):
    res = runner.invoke(app, ["bench", "engine", str(short_text), "--formats", "fp32,fp16w", "--tokens", "96",
                              "--new-tokens", "4", "--rounds", "2", "-m", str(tiny_dir), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rows = {r["format"]: r for r in out["rows"]}
    assert set(rows) == {"fp32", "fp16w"} and len(out["rows"]) == 2 and out["rounds"] == 2  # one row a format
    for r in rows.values():
        assert r["prefill_tok_s"] > 0 and r["decode_b1_tok_s"] > 0 and r["decode_b8_tok_s"] > 0
        assert r["peak_rss_mb"] > 0 and r["ppl_sink"] > 1
    assert rows["fp32"]["ppl_vs_fp32"] == 1.0
    assert abs(rows["fp16w"]["ppl_vs_fp32"] - 1) < 0.01  # fp16 weights: the same perplexity
    bad = runner.invoke(app, ["bench", "engine", str(short_text), "--formats", "fp8", "-m", str(tiny_dir)])
    assert bad.exit_code == 2 and "unknown format" in bad.stderr
    bad = runner.invoke(app, ["bench", "engine", str(short_text), "--rounds", "0", "-m", str(tiny_dir)])
    assert bad.exit_code == 2 and "--rounds 0: use at least 1" in bad.stderr


# ---------------------------------------------------------------------------------------------- int4
def test_int4_gives_back_q4_1_blocks_exactly():
    """A weight made of Q4_1 blocks (32 inputs, q in 0..15, its own scale and minimum) comes back from the
    packed int4 weight as it was, up to bf16 rounding of scale and offset."""
    from docstream.backend.int4 import dequantize, quantize

    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (48, 4, 32), generator=g).float()
    q[..., 0], q[..., 1] = 0, 15  # every block spans its whole range, as a Q4_1 block does
    w = (q * torch.rand(48, 4, 1, generator=g) * 0.02 - torch.rand(48, 4, 1, generator=g) * 0.1).reshape(48, 128)
    back = dequantize(*quantize(w), 128).float()
    step = w.reshape(48, 4, 32).amax(-1).sub(w.reshape(48, 4, 32).amin(-1)).max() / 15
    assert (back - w).abs().max() < step / 8


def test_int4_decodes_with_int4_weights_and_prefills_with_bf16(tiny_lm):
    from docstream.backend import int4

    base = copy.deepcopy(tiny_lm.model).to(torch.bfloat16)
    m = int4.int4_weights(copy.deepcopy(base))
    assert not any(type(mod) is torch.nn.Linear for mod in m.modules())
    assert isinstance(m.get_output_embeddings(), int4.Int8Linear)  # the head: int8 rows
    x = _ids(48)
    assert torch.equal(m(input_ids=x).logits, base(input_ids=x).logits)  # many rows: the bf16 weights
    one = x[:, :1]
    ref, got = base(input_ids=one).logits.float(), m(input_ids=one).logits.float()  # one row: int4 weights
    assert not torch.equal(ref, got)
    assert ((got - ref).abs().max() / ref.abs().max()).item() < 0.15
    c = SinkCache(m, sinks=4, window=64, max_pinned=8)
    c.feed(m, x, logits=None)
    texts, n = decode_forks(m, tiny_lm.tokenizer, [fork(m, c, _ids(6, 1)[0].tolist(), max_new_tokens=4)])
    assert n >= 1 and len(texts) == 1


def test_dtype_int4_reads_and_answers(home, tiny_dir, short_text):
    res = runner.invoke(app, ["ask", str(short_text), "What did Alice see?", "-m", str(tiny_dir), "--dtype", "int4",
                              "--window", "512", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["citations"]
