"""Where docstream keeps its files: `$DOCSTREAM_HOME`, else the platform's user cache directory.

    <home>/models/<name>/   converted safetensors + tokenizer (made once from the embedded GGUF)
    <home>/index/<hash>.db  one SQLite index per document
"""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("DOCSTREAM_HOME")
    if env:
        p = Path(env).expanduser()
    else:
        import platformdirs

        p = Path(platformdirs.user_cache_dir("docstream"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def models_dir() -> Path:
    p = home() / "models"
    p.mkdir(parents=True, exist_ok=True)
    return p


def index_dir() -> Path:
    p = home() / "index"
    p.mkdir(parents=True, exist_ok=True)
    return p
