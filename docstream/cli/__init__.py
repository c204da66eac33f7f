"""The `docstream` command (`main.py`), its shared options (`options.py`) and `docstream bench …` (`bench.py`)."""
from .main import app, main

__all__ = ["app", "main"]
