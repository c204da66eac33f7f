"""Tags for a chunk, from three sources, merged and normalised by the index's `normalize_tag`.

Design choices:
- `model`: what the model wrote after "Tags:" in its note (people, places, objects, events).
- `keyword`: YAKE (statistical, no download, deterministic) key phrases of the chunk text.
- `name`: capitalised names that occur at least twice in the chunk, or as a multi-word name once,
  excluding sentence-initial function words — cheap, and strong for "who/where" questions.
- Parsing the note never fails: a note without a "Tags:" line is all gist.
"""
from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

_STOP_CAPS = {
    "The", "A", "An", "And", "But", "Or", "If", "In", "On", "At", "Of", "To", "For", "With", "As", "By", "From",
    "It", "He", "She", "They", "We", "You", "His", "Her", "Their", "Our", "My", "Your", "This", "That", "These",
    "Those", "There", "Then", "When", "Where", "What", "Which", "Who", "Why", "How", "Not", "No", "Yes", "So",
    "All", "Some", "One", "Now", "Here", "Well", "Oh", "Mr", "Mrs", "Miss", "Dr", "Sir", "Lady", "Chapter",
    "Its", "Is", "Was", "Be", "Do", "Did", "Have", "Had", "After", "Before", "While", "Yet", "Still", "Only",
    "Even", "Perhaps", "Indeed", "Nor", "Such", "Upon", "Into", "Our", "Let", "Every", "Each", "Many", "Much",
}
_NAME = re.compile(r"\b(?:(?:Mr|Mrs|Miss|Dr|Sir|Lady|Lord|St)\.?\s)?[A-Z][a-z]+(?:\s(?:of\s)?[A-Z][a-z]+)*")
_HYPHEN_BREAK = re.compile(r"(\w)-\r?\n\s*(\w)")


def clean_text(text: str) -> str:
    """Join words hyphenated across line breaks and fold line breaks (for keyword extraction)."""
    return re.sub(r"\s+", " ", _HYPHEN_BREAK.sub(r"\1\2", text))


def parse_note(raw: str) -> tuple[str, list[str]]:
    """Split a generated note into (gist, model tags): a "Tags:" line if the model wrote one, and the
    names the model used in its sentence (the people, places and things the note prompt asks it to name)."""
    raw = raw.strip()
    m = re.search(r"(?im)^\s*tags?\s*:\s*(.*)$", raw)
    tags: list[str] = []
    if m:
        tags = [t.strip() for t in re.split(r"[,;/]", m[1]) if t.strip()]
        raw = raw[: m.start()].strip()
    gist = re.sub(r"\s+", " ", raw).strip()
    gist = re.sub(r"^(note|gist|summary|in this passage)\s*[:,]\s*", "", gist, flags=re.I)
    gist = gist[:1].upper() + gist[1:]
    whole = re.match(r"(.*[.!?][\"')]?)\s+\S[^.!?]*$", gist)  # drop a last sentence cut off by the token cap
    if whole and len(whole[1]) >= 20:
        gist = whole[1]
    seen = {t.lower() for t in tags}
    for name in _gist_names(gist):
        if name.lower() not in seen:
            tags.append(name)
            seen.add(name.lower())
    return gist, tags


def join_lead(lead: str, text: str) -> str:
    """The note's first words (written into its prompt) and the decoded rest, spaced as a sentence."""
    if not lead:
        return text
    return lead + ("" if re.match(r"['’,.;:!?]", text) else " ") + text


def _gist_names(gist: str) -> list[str]:
    out = []
    for m in _NAME.finditer(gist):
        words = m[0].split()
        while words and words[0] in _STOP_CAPS:
            words = words[1:]
        if words:
            out.append(" ".join(words))
    return out


@lru_cache(maxsize=1)
def _yake():
    import yake

    return yake.KeywordExtractor(lan="en", n=2, top=6, dedupLim=0.7)


def keywords(text: str, top: int = 6) -> list[str]:
    text = clean_text(text)
    if len(text) < 40:
        return []
    out = []
    for k, _ in _yake().extract_keywords(text):
        words = [w for w in re.split(r"\s+", k) if len(w) > 2 and not re.search(r"[’'`]", w)]
        if len(words) == len(k.split()):  # drop contraction debris such as "ll", "n’t"
            out.append(k)
    return out[:top]


def names(text: str, top: int = 8) -> list[str]:
    text = clean_text(text)
    counts: Counter[str] = Counter()
    for m in _NAME.finditer(text):
        words = m[0].split()
        while words and words[0] in _STOP_CAPS:  # "The Time Traveller" -> "Time Traveller"
            words = words[1:]
        if not words:
            continue
        name = " ".join(words)
        counts[name] += 2 if len(words) > 1 else 1
    return [n for n, c in counts.most_common(top) if c >= 2]


def lead_name(text: str) -> str:
    """The name a passage uses most that also occurs mid-sentence after a lowercase word ("said the Time
    Traveller"): a proper noun, not a heading ("VI The Sunset of Mankind") or a sentence opener ("However,")."""
    flat = clean_text(text)
    for name in names(text):
        if re.search(rf"\b[a-z]+,?\s+{re.escape(name)}\b", flat):
            return name
    return ""


def chunk_tags(text: str, model_tags: list[str]) -> list[tuple[str, str]]:
    """(tag, source) pairs before normalisation; the index normalises and deduplicates."""
    out = [(t, "model") for t in model_tags[:8]]
    out += [(t, "name") for t in names(text)]
    out += [(t, "keyword") for t in keywords(text)]
    return out
