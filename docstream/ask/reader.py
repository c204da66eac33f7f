"""The reader: one small prompt per evidence window, decoded together, and the answer the evidence supports.

Design choices:
- Candidates: `CANDIDATES` (5) sentence windows (found by `answer.gather`), each alone in the answer
  prompt (`prompts/answer.txt` with one passage). A 135M model answers from one window of ~300 characters far
  better than from several: with the gold sentence and its neighbours it is right about twice as often as
  with the same sentence among a page of others (`docstream bench qa`, oracle vs docstream rows).
- The candidates are forks decoded as one batch (one pass over the weights serves every row). Each answer's
  confidence (mean token log-probability, `Backend.confidence`; None remotely) is reported in `readings`
  but does not choose: on 33 dev questions, choosing the most confident supported answer got 9 right, the
  first supported one in retrieval order 12 (a window copied verbatim is the model's most confident answer).
- Support, without a judge: an answer is *supported* by its window when the content words it adds to the
  question occur there (`added`, matched on crude stems; at least half of them, since a small model embroiders:
  "Banstead Abbey" from "…nineteenth-century Banstead"), but every number it adds must be one the window
  states, in words or digits (`text.numbers`: "thirty-six large gemstones" from "thirty-nine" is not
  supported; "3 inches" from "three inches" is), and a number it adds counts as found when the window states
  it in other figures ("39" from "thirty-nine"). The model's wrapping is left out first (`SCAFFOLD`: "The
  answer is:", "… was mentioned in the passage"): it is how a 135M model phrases right answers too ("The city
  of Copenhagen was mentioned in the passage."). An answer that adds nothing (it echoes the question) is not an
  answer, nor is one that talks about the text once unwrapped (`ABOUT_TEXT`: "The passage is about …"), nor
  one to "how many/much/long/far …" that states no amount ("The answer is John" for how many wives). The
  summaries' longer list of meta phrases (`content.META`) is not used here: "structure" or "character" can
  be an answer ("a vast green structure"). On the 330 readings of the 66 dev questions these rules support
  120 (123 with the old rules, which chose 24 right answers); the chosen answer is right for 26 questions and
  wrong but "supported" for 30 (32 without the amount rule, which turns no right answer into a guess).
- The chosen reading is the supported one whose window holds the most of the question's words, the first in
  retrieval order on a tie. The first supported reading may come from a window found by meaning that
  answers something else ("The Time Traveller was a monstrous crab." for
  "What did the Morlocks' eyes shine like…?"). On the same readings the first supported one is right 25
  times, the most confident supported one 21, this choice 26; some reading is right 27 times.
- When no reading is supported, the answer says so and gives the best guess as a guess — never as fact.
- The answer is shown in its evidence: `mark` is the smallest stretch of the window that holds the words the
  answer added (char offsets in the document), so the CLI can print the sentence with the span marked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import prompts
from ..backend.base import Backend
from ..text.numbers import numbers
from .focus import WORD, Citation, evidence_prompt, terms
from .retrieve import _same_word

CANDIDATES = 5
SCAFFOLD = re.compile(r"^\s*(?:the answer(?: to (?:this|the) question)? is\s*:?|answer\s*:)\s*"  # the model's
                      r"|\s*\b(?:is|was|are|were) (?:mentioned|described|stated|named|given|shown) in the "  # wrapping
                      r"(?:passage|text)\b|\s*\b(?:in|from|according to) the (?:passage|text)\b", re.I)
HOW_MUCH = re.compile(r"\bhow (?:many|much|long|far|tall|high|old|big|large|deep|wide|often|heavy)\b", re.I)
QUANTITY = re.compile(r"\b(?:half|quarter|dozen|score|couple|fortnight|few|several|once|twice|\w*pence|\w*penny|"
                      r"pennies)\b|\b(?:an?|one) (?:hour|day|week|month|year|mile|inch|foot|yard|minute|pound)", re.I)
ABOUT_TEXT = re.compile(r"\b(?:the|this) (?:passage|text|story|author|narrator|novel|chapter)\b|\bnarrative\b", re.I)
UNSUPPORTED = "The cited passages do not clearly say. Best guess, not found in them: "


@dataclass
class Reading:
    """One candidate answer, read from one evidence window."""

    text: str
    citation: Citation
    confidence: float | None  # mean token log-probability; None from a remote backend
    added: list[str]  # the content words the answer adds to the question
    supported: bool  # at least half the added words occur in the window (and at least one does)
    mark: tuple[int, int] | None  # doc char span of the added words inside the window


def added_words(answer: str, question: str) -> list[str]:
    """The content words of `answer` that the question does not already hold (in answer order, once)."""
    q = terms(question)
    out: list[str] = []
    for w in terms(answer):
        if w not in out and not any(_same_word(w, x) for x in q):
            out.append(w)
    return out


def support(answer: str, question: str, citation: Citation, reach: int = 40
            ) -> tuple[list[str], bool, tuple[int, int] | None]:
    """(added words, supported, mark): is the answer's new information in the cited window, and where. The
    mark is the tightest cluster of added words (within `reach` characters of one of them)."""
    core = SCAFFOLD.sub("", answer)
    added = added_words(core, question)
    words = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(citation.quote)]
    hits = {w: [(a, b) for a, b, x in words if _same_word(w, x)] for w in added}
    told = numbers(citation.quote)
    found = sum(1 for w in added if hits[w] or ((n := numbers(w)) and n <= told))  # "39": "thirty-nine"
    stated = numbers(core) - numbers(question) - {"1"}  # "one" is as often a pronoun ("no one", "the one")
    supported = (found > 0 and found * 2 >= len(added)  # most of what it adds is there ("Banstead Abbey")
                 and stated <= told  # but every number it adds ("thirty-six" for thirty-nine)
                 and not ABOUT_TEXT.search(core)  # "The passage mentions …" is about the text, not an answer
                 and (not HOW_MUCH.search(question) or _quantity(core)))  # "How many wives?" — "John"
    best: list[tuple[int, int]] = []
    for a, b in (h for hs in hits.values() for h in hs):  # each hit as an anchor: the added words near it
        near = [min(hs, key=lambda h: abs(h[0] - a)) for hs in hits.values() if hs]
        near = [h for h in near if abs(h[0] - a) <= reach]
        if len(near) > len(best):
            best = near
    if not best:
        return added, supported, None
    base = citation.char_start
    return added, supported, (base + min(s for s, _ in best), base + max(e for _, e in best))


def _quantity(answer: str) -> bool:
    """The answer states an amount: a number in words or digits, or "a fortnight", "eightpence", "twice"."""
    return bool(numbers(answer)) or QUANTITY.search(answer) is not None


def read(engine: Backend, doc: Any, question: str, citations: list[Citation], max_tokens: int,
         stop: tuple[str, ...]) -> list[Reading]:
    """Every candidate window read alone, decoded as one batch; readings in the order of `citations`."""
    system = prompts.get("system").render()
    forks = [engine.prompt_fork(system, evidence_prompt(doc, question, [c], labels=False), max_tokens, stop)
             for c in citations]
    texts = engine.decode(forks)
    out = []
    for text, conf, c in zip(texts, engine.confidence(forks), citations, strict=True):
        added, ok, mark = support(text, question, c)
        out.append(Reading(text=text, citation=c, confidence=conf, added=added, supported=ok, mark=mark))
    return out


def matched(question: str, quote: str) -> int:
    """How many of the question's content words its window holds (on crude stems)."""
    window = set(terms(quote))
    return sum(1 for t in set(terms(question)) if any(_same_word(t, w) for w in window))


def choose(readings: list[Reading], question: str) -> Reading:
    """Of the supported readings, the one whose window holds the most of the question's words (the first in
    retrieval order on a tie); when none is supported, the first one (shown as a guess)."""
    assert readings, "no reading to choose from"
    backed = [r for r in readings if r.supported]
    return max(backed, key=lambda r: matched(question, r.citation.quote)) if backed else readings[0]


def phrase(r: Reading) -> str:
    """The answer as shown: the model's words when the evidence supports them, else marked as a guess."""
    text = " ".join(r.text.split())
    return text if r.supported else UNSUPPORTED + (text or "(no answer)")
