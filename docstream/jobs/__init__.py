"""Many documents at once: `batch.py` (local lockstep reading, or a Ray cluster)."""
