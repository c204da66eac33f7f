import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "corpus"
# The converted embedded model is cached here across test runs (converting takes ~20 s once).
os.environ.setdefault("DOCSTREAM_HOME", str(REPO / ".home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tiny test model gains nothing from threads, and several test processes (concurrency tests, a shared
# machine) oversubscribe 2 cores badly when each spins OpenMP threads: one thread per process in tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")
MODELS = Path(os.environ["DOCSTREAM_HOME"]) / "models"


@pytest.fixture(scope="session")
def tiny_lm():
    from docstream.backend.model import tiny

    return tiny()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_lm):
    """The tiny random Llama saved as a local Hugging Face directory: usable as `--model DIR`."""
    d = tmp_path_factory.mktemp("tiny-llama")
    tiny_lm.model.save_pretrained(d)
    tiny_lm.tokenizer.save_pretrained(d)
    return d


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DOCSTREAM_HOME per test (indexes land here), sharing the converted models."""
    h = tmp_path / "home"
    h.mkdir()
    MODELS.mkdir(parents=True, exist_ok=True)
    (h / "models").symlink_to(MODELS, target_is_directory=True)
    monkeypatch.setenv("DOCSTREAM_HOME", str(h))
    from docstream import api

    api._ENGINES.clear()
    return h


@pytest.fixture
def short_text(tmp_path):
    p = tmp_path / "short.txt"
    shutil.copy(REPO / "samples" / "short.txt", p)
    return p
