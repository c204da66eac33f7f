"""Step 1–2 of the data's path: load a file to exact text (`load.py`), find its chapters (`chapters.py`), cut
token-bounded chunks (`chunk.py`)."""
