"""Step 6–7, questions: rank the evidence (`retrieve.py`), then answer from it with citations (`answer.py`)."""
