import os
from pathlib import Path

import pytest

os.environ.setdefault("DOCSTREAM_HOME", str(Path(__file__).resolve().parents[1] / ".home"))


@pytest.fixture(scope="session")
def tiny_lm():
    from docstream.model import tiny

    return tiny()
