"""Step 3, the model: what a backend does (`base.py`), the local sink-cache backend (`local.py` over `model.py`,
`sink_cache.py`, `generate.py`, `forks.py`) and the OpenAI-compatible one (`openai.py`).

Nothing is imported here, so `from docstream.backend.base import …` never loads torch."""
