"""Step 4 of the data path: the reading pass writes a note (gist + tags) per chunk and the rolling summary."""
