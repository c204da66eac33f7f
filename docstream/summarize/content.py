"""Content: does a summary sentence say what happens, in the words of what it summarizes?

Design choices:
- A sentence's *content words* are its words minus the index's stop words (`index.search.STOP_WORDS`), a few
  frame words every summary uses ("chapter", "story", "then"), and the book's names. Names are left out
  because a 135M model can always copy a name: "The Time Traveller is mentioned twice" names the right person
  and says nothing. The book's names are the capitalised words it uses mid-sentence more often than in lower
  case ("Weena", "Morlocks"; not "Time", which the book also writes "time").
- `grounding(sentence, source)`: the share of those content words that occur in `source` (the chapter or story
  summarized), compared by a crude suffix stem ("travels" ~ "travelled" ~ "travel"). A sentence without
  content words has grounding None.
- `is_vacuous(sentence, source)`: the sentence talks about the text instead of the events — it contains one of
  the maintained `META` phrases ("narrative", "is described", "the passage", "style", …) — or it says nothing
  checkable: no content word, grounding < `MIN_GROUNDING` (0.5), or a loop (of 4+ content words fewer than
  half distinct, a doubled word, or a 3-word run that comes back: "the human species is the human species").
- `gate(…, strict=True)`, for chapter lines, also asks grounding >= `LINE_GROUNDING` (0.75) (on the six novels
  the lines between 0.5 and 0.75 were nonsense: "In this chapter, Time Traveller, a brilliant scientist, is
  transported to the future"), no name or number the chapter lacks (`invented`), and a whole sentence (`whole`:
  four words or more, ending with its punctuation; read with one-sentence chapter lines, Frankenstein had the
  lines "The stranger" and "The creature").
- `key_sentence(text)`: the extractive fallback, the sentence of `text` that shares the most of the text's
  frequent content words and names (weighted by how much more often the text uses them than the book), with
  dialogue scored down; very short sentences, fragments (lowercase start), headings (Title Case), bracketed
  notes and sentences with a `META` phrase (a transcriber's note) left out; cut to about `KEY_WORDS` words at a
  clause boundary. Its words are always the book's own words in the book's order (whitespace collapsed, quote
  marks around it dropped). For a chapter's line (`line=True`, the strict gate's fallback) a sentence where
  someone does something (`narrates`: a doer — a personal pronoun or one of the book's names — and a verb in
  the past tense) scores `EVENT_BONUS` (1.5) times more, and one that `loops` is never taken: over the six
  novels' 144 chapters, 129 lines narrate against 114, and The Time Machine's VII, VIII, XIII and XIV say what
  the traveller does ("I saw a curved pale line like a vast new moon") instead of describing ("The red eastern
  sky, the northward blackness, …") or reflecting. Notes keep the plain key sentence.
- Profiles of a source (its stem counts and names) are cached by the source string: a chapter's lines are
  measured against the same text many times.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from ..index.search import STOP_WORDS
from ..text.sentences import ends_sentence, split_sentences

MIN_GROUNDING = 0.5
LINE_WORDS = 4  # a chapter line the gate keeps (`strict`) is a whole sentence of at least this many words
LINE_GROUNDING = 0.75  # a chapter line the gate keeps (`strict`): below it, the lines the model wrote were nonsense
KEY_WORDS = 30
EVENT_BONUS = 1.5  # a chapter line's key sentence: one that narrates scores this much more
PAST = frozenset("went came saw took found made gave got ran sat stood fell held told felt left brought began broke "
                 "caught drove ate fought flew led lost met rode rose shook shot spoke struck threw woke wrote won drew "
                 "hid bit hung lay lit sent spent stole swept tore wore fled sprang sank swam fed dug slid spun stuck "
                 "swung sought bought knelt crept leapt wept heard did put set cut let shut cast thrust".split())
NOT_PAST = frozenset("need indeed hundred bed seed feed speed breed deed weed shed sacred naked wicked kindred creed "
                     "bred".split())
DOERS = frozenset("i he she they we".split())
# Talk about the text instead of the events. Matched case-insensitively as whole words; keep it maintained: add
# a phrase when a line like the ones it catches turns up, with a test (tests/test_content.py).
META = (
    "narrative", "narrator's style", "is described", "are described", "was described", "is mentioned",
    "are mentioned", "was mentioned", "mentioned twice", "the passage", "this passage", "passages", "style",
    "detailed and engaging", "engaging", "engaged", "the text", "this text", "the author", "the reader",
    "the story is told", "is told in", "is portrayed", "are portrayed", "is depicted", "are depicted",
    "is presented", "is introduced as", "is referred to", "described as", "focuses on", "the main action",
    "the main character", "the main characters", "the summary", "the note", "the notes", "language", "tone",
    "theme", "themes", "imagery", "vivid", "concise", "sentence", "sentences", "paragraph", "a sense of",
    "plays a crucial role", "plays a significant role", "plays a key role", "plays an important role",
    "the chapter is", "this chapter is", "the chapter describes", "the story describes", "the story is about",
    "the novel", "literary", "structure", "writing", "descriptive", "detail-oriented", "in detail",
    "next passage", "previous passage", "a story about", "a story of", "factual note", "this summary",
    "the original text", "the document", "stop reading", "character", "characters", "protagonist", "narrated",
    "the narrator", "is introduced", "are introduced", "is shown to", "are shown to", "was shown to",
    "is highlighted", "are highlighted", "highlights the", "is contrasted", "are contrasted", "touches on",
    "the idea of", "refer to", "main people", "is explained", "are explained", "a symbol of", "fictional",
    "a reminder", "is revealed to", "are revealed to", "revealed as", "revealed through", "transcriber",
    "the story follows", "the story also", "is set in",
)
_META = re.compile(r"\b(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in META)
                   + r"|about\s+\d+\s+words)\b", re.I)  # and the length asked for, echoed: "in about 120 words"
FRAME = frozenset("chapter chapters story book passage part beginning middle end then finally later".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_QUOTES = "\"'“”‘’`"


_IRREGULAR = dict(pair.split(":") for pair in """fought:fight ran:run came:come went:go gone:go saw:see seen:see
found:find took:take taken:take told:tell made:make gave:give given:give got:get left:leave thought:think
knew:know known:know began:begin begun:begin brought:bring felt:feel held:hold kept:keep lost:lose met:meet
sat:sit stood:stand spoke:speak spoken:speak wrote:write written:write fell:fall fallen:fall heard:hear led:lead
caught:catch ate:eat eaten:eat drove:drive rode:ride flew:fly threw:throw hid:hide woke:wake bought:buy
sent:send spent:spend built:build became:become chose:choose struck:strike sought:seek slept:sleep wept:weep
fled:flee dug:dig swam:swim sang:sing drank:drink broke:break broken:break stole:steal stolen:steal
""".split())


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    w = word.lower().strip("'’-")
    w = re.sub(r"['’]s$", "", w)
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) > 4 and w.endswith(("ied", "ies")):
        return w[:-3] + "y"
    for suffix in ("ingly", "edly", "ing", "ed", "ly", "es", "s"):
        if len(w) - len(suffix) >= 3 and w.endswith(suffix):
            w = w[:-len(suffix)]
            break
    return w[:-1] if len(w) > 4 and w[-1] == "e" else w  # "describe" ~ "describ(ed)"


@dataclass(frozen=True)
class Profile:
    """What a source offers a sentence: its stems (with counts), its names (lowercase), its word count."""
    stems: Counter
    names: frozenset
    words: int


@lru_cache(maxsize=64)
def profile(source: str) -> Profile:
    """A source's stem counts and names (capitalised mid-sentence more often than in lower case)."""
    stems: Counter[str] = Counter()
    caps: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    n = 0
    for sent in split_sentences(source):
        for i, m in enumerate(_WORD.finditer(sent)):
            w = m.group()
            n += 1
            stems[_stem(w)] += 1
            if "-" in w:  # "Kal-Jmar" also answers for "Kal" and "Jmar", "space-buggy" for "space buggy"
                stems.update(_stem(part) for part in w.split("-") if len(part) > 1)
            key = re.sub(r"['’]s$", "", w).strip("'’-").lower()
            if w[0].isupper():
                if i > 0 and not sent[:m.start()].rstrip().endswith((":", "“", '"', "‘")):
                    caps[key] += 1
            else:
                lower[key] += 1
    names = {w for w, c in caps.items() if c > lower[w] and w not in STOP_WORDS and len(w) > 1}
    names |= {part for w in names if "-" in w for part in w.split("-") if len(part) > 1}
    names = frozenset(names)
    return Profile(stems, names, n)


def content_words(sentence: str, names: frozenset | set | None = None) -> list[str]:
    """The sentence's words that carry content: not stop words, frame words ("chapter", "then") or `names`."""
    names = names or frozenset()
    out = []
    for m in _WORD.finditer(sentence):
        w = re.sub(r"['’]s$", "", m.group()).strip("'’-").lower()
        if len(w) > 2 and w not in STOP_WORDS and w not in FRAME and w not in names:
            out.append(w)
    return out


def grounding(sentence: str, source: str, names: frozenset | set | None = None) -> float | None:
    """Share of the sentence's content words found in `source` (stemmed); None when it has none. `names`
    (lowercase) are left out; by default the source's own names."""
    prof = profile(source)
    words = content_words(sentence, prof.names if names is None else names)
    if not words:
        return None
    return round(sum(1 for w in words if _found(w, prof)) / len(words), 4)


def _found(word: str, prof: Profile) -> bool:
    """The word's stem is in the source, or every part of a hyphenated word is."""
    if _stem(word) in prof.stems:
        return True
    parts = [p for p in word.split("-") if len(p) > 1]
    return len(parts) > 1 and all(_stem(p) in prof.stems for p in parts)


def meta_phrase(sentence: str) -> str | None:
    """The first `META` phrase in the sentence (talk about the text), or None."""
    m = _META.search(sentence)
    return m.group().lower() if m else None


def is_vacuous(sentence: str, source: str, names: frozenset | set | None = None) -> bool:
    """True when the sentence talks about the text (a `META` phrase) or says nothing the source supports
    (no content word, or grounding below `MIN_GROUNDING`)."""
    if meta_phrase(sentence) or loops(sentence):
        return True
    g = grounding(sentence, source, names)
    return g is None or g < MIN_GROUNDING


def loops(sentence: str) -> bool:
    """The sentence goes round in circles: of 4+ content words fewer than half are distinct (stemmed), a word
    is doubled ("endless endless"; a name may be: "Vee Vee"), or a run of three words comes back ("the human
    species is the human species")."""
    words = [_stem(w) for w in content_words(sentence)]
    if len(words) >= 4 and len(set(words)) * 2 < len(words):
        return True
    found = _WORD.findall(sentence)
    low = [w.lower() for w in found]
    if any(a == b and a.islower() and len(a) > 2 for a, b in zip(found, found[1:])):  # not "Vee Vee": a name
        return True
    runs = [tuple(low[i:i + 3]) for i in range(len(low) - 2)]
    return len(set(runs)) < len(runs)


def whole(sentence: str) -> bool:
    """A whole sentence: `LINE_WORDS` words or more, ending with its punctuation (not "The stranger", nor a line
    the token cap cut off)."""
    return len(sentence.split()) >= LINE_WORDS and ends_sentence(sentence)


_CAPITAL = re.compile(r"\b[A-Z][a-z]{2,}\b")


def invented(sentence: str, source: str) -> str | None:
    """A name or number of the sentence that `source` does not have (the first; None when there is none).
    Names are the capitalised words after the sentence's first word ("In this chapter, Judith Boss …" names
    a transcriber of the book's front matter, not anyone in the chapter)."""
    parts = sentence.split(None, 1)
    for w in _CAPITAL.findall(parts[1] if len(parts) > 1 else ""):
        if not re.search(rf"\b{w}\b", source):
            return w
    for n in re.findall(r"\d+", sentence):
        if not re.search(rf"(?<!\d){n}(?!\d)", source):
            return n
    return None


def measure(text: str, source: str, names: frozenset | set | None = None) -> list[dict]:
    """One row per sentence of `text`: the sentence, its grounding, its meta phrase, whether it is vacuous."""
    rows = []
    for sent in split_sentences(text):
        g = grounding(sent, source, names)
        meta = meta_phrase(sent) or ("(loop)" if loops(sent) else None)
        rows.append({"sentence": sent, "grounding": g, "meta": meta,
                     "vacuous": bool(meta) or g is None or g < MIN_GROUNDING})
    return rows


def summarize_rows(rows: list[dict]) -> dict:
    """Share of vacuous sentences and mean grounding (sentences without content words count as 0)."""
    if not rows:
        return {"sentences": 0, "vacuous": None, "grounding": None}
    return {"sentences": len(rows), "vacuous": round(sum(r["vacuous"] for r in rows) / len(rows), 4),
            "grounding": round(sum(r["grounding"] or 0.0 for r in rows) / len(rows), 4)}


# ---------------------------------------------------------------------------------------------- extractive
def _trim(sentence: str, most: int = KEY_WORDS) -> str:
    """At most about `most` words, cut after a clause (, ; : —) when it is longer; quote marks dropped at
    the edges; ends with a full stop."""
    s = " ".join(sentence.split()).strip(_QUOTES + " ")
    words = s.split()
    if len(words) > most:
        cut = " ".join(words[:most])
        ends = [m.start() for m in re.finditer(r"[,;:—]|\s-{1,2}\s", cut)]
        good = [e for e in ends if len(cut[:e].split()) >= most // 3]
        s = cut[:good[-1]] if good else cut
    s = s.rstrip(" ,;:—-" + _QUOTES)
    if s.count('"') % 2:
        s = s.replace('"', "")
    return s if re.search(r"[.!?]$", s) else s + "."


def _heading(sentence: str) -> bool:
    """Title Case or capitals, not a sentence: most words start with a capital (or none has a lowercase letter)."""
    words = _WORD.findall(sentence)
    caps = sum(w[0].isupper() for w in words)
    return not re.search(r"[a-z]", sentence) or caps * 5 >= len(words) * 3


def narrates(sentence: str, names: frozenset | set = frozenset()) -> bool:
    """Someone does something in the past tense: a verb in the past ("-ed", or an irregular one from `PAST`) and a
    doer (a personal pronoun, or one of the book's `names`)."""
    words = _WORD.findall(sentence)
    lower = [w.lower() for w in words]
    past = any(w in PAST or (len(w) > 4 and w.endswith("ed") and w not in NOT_PAST) for w in lower)
    return past and any(w in DOERS or (w in names and o[0].isupper()) for w, o in zip(lower, words))


def key_sentence(text: str, book: str | None = None, most: int = KEY_WORDS, line: bool = False) -> str:
    """The sentence of `text` that shares the most of its frequent content words and names (those it uses
    more than `book` does, when given), trimmed to about `most` words. '' for a text without sentences. For a
    chapter `line`, a sentence that `narrates` scores `EVENT_BONUS` times more, and one that `loops` is left out."""
    prof = profile(text)
    names = profile(book).names if book else prof.names
    ref = profile(book) if book else None
    weight: dict[str, float] = {}
    for stem, c in prof.stems.items():
        if c < 2 or stem in STOP_WORDS or len(stem) < 3:
            continue
        lift = 1.0
        if ref is not None and ref.words:
            expected = ref.stems.get(stem, c) * prof.words / ref.words
            lift = min(4.0, max(0.25, c / max(expected, 0.5)))
        weight[stem] = math.log1p(c) * lift
    best, best_score = "", -1.0
    for sent in split_sentences(text):
        flat = " ".join(sent.split())
        n = len(flat.split())
        if n < 5 or flat[0].islower() or meta_phrase(flat) or _heading(flat) or "[" in flat or "]" in flat:
            continue  # short, a fragment after dialogue ("said the Mock Turtle."), talk about the text, a heading
            # ("The Rabbit Sends in a Little Bill."), a bracketed editor's note
        if line and loops(flat):
            continue  # a chapter line the gate would call vacuous
        seen = {_stem(w): 2.0 if w in names else 1.0 for w in content_words(flat)}  # a name counts twice
        score = sum(weight.get(stem, 0.0) * factor for stem, factor in seen.items())
        score /= math.sqrt(max(n, 12))  # long sentences do not win by length alone
        if flat[0] in _QUOTES or any(q in flat for q in "“”\"") or flat.count("‘") + flat.count("'") >= 2:
            score *= 0.6  # dialogue: what someone says, less often what happens
        if line and narrates(flat, names) and not flat.endswith("?"):
            score *= EVENT_BONUS  # a chapter line says what happens
        if score > best_score:
            best, best_score = flat, score
    return _trim(best, most) if best else ""


def gate(text: str, source: str, book: str | None = None, most: int = KEY_WORDS, strict: bool = False
         ) -> tuple[str, str]:
    """(text, method): the sentences of `text` that are not vacuous against `source` ("model"); when none
    is left, the key sentence of `source`, about `most` words ("extractive"). Names are the book's when `book`
    is given. `strict` (chapter lines) also asks grounding >= `LINE_GROUNDING` and nothing `invented`."""
    names = profile(book).names if book else None

    def ok(sent: str) -> bool:
        if is_vacuous(sent, source, names):
            return False
        return not strict or ((grounding(sent, source, names) or 0.0) >= LINE_GROUNDING
                              and invented(sent, source) is None and whole(sent))

    keep = [s for s in split_sentences(text) if ok(s)]
    if keep:
        return " ".join(keep), "model"
    key = key_sentence(source, book, most, line=strict)
    return (key, "extractive") if key else (text, "model")
