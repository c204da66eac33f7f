"""Sentence ends, for every part that cuts text into sentences (decoding, remote answers, summaries)."""
from __future__ import annotations

import re

# The end of a sentence, once the next word has begun (so "Mr. Holmes" and "3.5" are not ends).
SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\b[A-Z])[.!?][\"'’”)\]]*(?=\s+\S)")


def first_sentence(text: str) -> str:
    """`text` up to the end of its first complete sentence (punctuation kept), or all of it."""
    m = SENTENCE_END.search(text)
    return text[:m.end()] if m else text
