"""Step 4, the reading pass: chunks stream through the sink cache, a note per chunk, rolling summaries
(`reader.py`); note parsing and tags (`tags.py`)."""
