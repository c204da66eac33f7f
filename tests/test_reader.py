"""The forks reader: each candidate window read alone, the answer its evidence supports, the span marked — and an
answer the evidence does not hold said to be a guess."""
from pathlib import Path

import pytest

import docstream
from docstream.ask.focus import Citation
from docstream.ask.reader import UNSUPPORTED, Reading, added_words, choose, phrase, support
from docstream.backend.local import Engine
from docstream.render import citation_line
from docstream.text.sentences import mostly_headings

REPO = Path(__file__).resolve().parents[1]
SENTENCE = "Further in the gallery was the huge skeleton barrel of a Brontosaurus. My museum hypothesis was confirmed."
QUESTION = "Whose huge skeleton barrel lay further in the gallery of the Palace of Green Porcelain?"


def window(quote: str = SENTENCE, start: int = 1000) -> Citation:
    return Citation(chunk=3, chapter="XI. The Palace of Green Porcelain", char_start=start,
                    char_end=start + len(quote), line_start=10, line_end=11, quote=quote)


def test_added_words_leave_out_what_the_question_already_says():
    answer = "The huge skeleton barrel of a Brontosaurus was in the gallery."
    assert added_words(answer, QUESTION) == ["brontosaurus"]
    assert added_words("The huge skeleton barrel lay in the gallery.", QUESTION) == []  # an echo adds nothing


def test_support_marks_the_answer_inside_its_window():
    c = window()
    added, ok, mark = support("A Brontosaurus, whose skeleton was confirmed.", QUESTION, c)
    assert ok and "brontosaurus" in added
    assert mark is not None and SENTENCE[mark[0] - c.char_start:mark[1] - c.char_start].startswith("Brontosaurus")
    # Words the window does not hold are not supported; an echo of the question is not an answer.
    assert not support("A Tyrannosaurus from Cretaceous rocks.", QUESTION, c)[1]
    assert not support("The huge skeleton barrel lay further in the gallery.", QUESTION, c)[1]
    # A small model embroiders: most of what it adds must be there, not all of it.
    assert support("nineteenth-century Banstead Abbey", "Which place?", window("in the direction of "
                                                                               "nineteenth-century Banstead"))[1]
    # …but every number it adds must be the window's own, in words or digits.
    gems = window("The coronet is comprised of thirty-nine large beryls.")
    assert not support("Thirty-six large beryls.", "How many beryls?", gems)[1]  # 2 of its 3 words are there
    assert support("39 large beryls.", "How many beryls?", gems)[1]
    assert support("No one counted; thirty-nine beryls.", "How many beryls?", gems)[1]  # "one": a pronoun


def test_support_looks_past_the_models_wrapping():
    gems = window("'There are thirty-nine enormous beryls,' said he.")
    assert support("The answer to this question is: 39", "How many huge gemstones are there?", gems)[1]
    assert not support("The answer to this question is: 36", "How many huge gemstones are there?", gems)[1]
    label = window("I noticed a “Copenhagen” label upon each of their trunks, showing that had been their last stop.")
    city = "What city's name appeared on the stickers attached to the travellers' luggage?"
    assert support("The city of Copenhagen was mentioned in the passage.", city, label)[1]
    assert not support("The city of Ashwood was mentioned in the passage.", city, label)[1]
    assert not support("The passage is about Copenhagen.", city, label)[1]  # about the text, once unwrapped
    # A word the summaries count as talk about the text can be an answer.
    abbey = window("I observed far-off, in the direction of nineteenth-century Banstead, a vast green structure.")
    assert support("The vast green structure stood towards Banstead.", "What did he see towards the south-west?",
                   abbey)[1]


def test_a_how_many_question_needs_an_amount():
    wives = window("Stangerson rode in the wagon with his three wives and the young Ferrier girl.")
    q = "How many spouses did Stangerson have riding with the girl?"
    assert not support("The answer is \"Ferrier\"", q, wives)[1]  # in the window, but not an amount
    assert support("He had three wives.", q, wives)[1]
    bill = window("Sherry, 8d. The bill was for eightpence, paid the same evening.")
    assert support("It cost eightpence.", "How much was charged for a glass of sherry?", bill)[1]
    trip = window("After a fortnight in the town he was set free and went home.")
    assert support("After a fortnight.", "How long was he kept before being set free?", trip)[1]
    assert support("Ferrier rode with him.", "Who rode with Stangerson?", wives)[1]  # other questions: no amount


def test_choose_takes_the_supported_answer_whose_window_matches_the_question_best():
    c = window()
    guess = Reading("A whale.", c, -0.1, ["whale"], False, None)
    backed = Reading("A Brontosaurus.", c, -0.9, ["brontosaurus"], True, (1050, 1062))
    later = Reading("A Megatherium.", c, -0.2, ["megatherium"], True, None)
    assert choose([guess, backed, later], QUESTION) is backed  # not the more confident guess; first on a tie
    assert choose([guess, Reading("A cat.", c, -0.5, ["cat"], False, None)], QUESTION) is guess
    elsewhere = window("A monstrous crab-like creature came slowly towards me across the beach.", start=5000)
    crab = Reading("A monstrous crab.", elsewhere, -0.1, ["monstrous", "crab"], True, None)
    assert choose([crab, backed], QUESTION) is backed  # its window shares no word of the question
    assert phrase(guess) == UNSUPPORTED + "A whale." and phrase(backed) == "A Brontosaurus."
    # Talk about the text is not an answer, whatever words it copies.
    assert not support("The passage mentions a Brontosaurus.", QUESTION, c)[1]


def test_citation_line_shows_the_marked_span_even_when_the_quote_is_cut():
    quote = "x " * 200 + SENTENCE
    c = window(quote)
    at = c.char_start + quote.index("Brontosaurus")
    line = citation_line(1, c, (at, at + len("Brontosaurus")))
    assert "«Brontosaurus»" in line and line.startswith("  [1] XI. The Palace of Green Porcelain — lines 10-11")
    assert len(line) < 400 and "«" not in citation_line(2, c)


def test_decoded_forks_report_their_confidence(tiny_lm):
    engine = Engine(tiny_lm)
    forks = [engine.prompt_fork("system", q, 12) for q in ("What was on the bottle?", "Who is Alice?")]
    assert engine.confidence(forks) == [None, None]  # nothing decoded yet
    texts = engine.decode(forks)
    for f, t in zip(forks, texts):  # the mean log-probability of what was emitted
        assert 0 < f.scored <= 12 and t and f.confidence <= 0.0
    assert engine.confidence(forks) == [f.confidence for f in forks]


@pytest.fixture(scope="module")
def time_machine(tmp_path_factory):
    d = tmp_path_factory.mktemp("tm")
    p = d / "time-machine.txt"
    p.write_bytes((REPO / "samples" / "time-machine.txt").read_bytes())
    return p


def test_the_embedded_model_finds_reads_and_marks_a_detail(home, time_machine):
    """The real model on a real novel, from the text index alone (no read): the sentence-level search finds the
    sentence, the reader's answer is supported by it, and the answer's span is marked in it."""
    doc = docstream.open(time_machine)
    ans = doc.ask(QUESTION, wait=False)
    assert ans.first and ans.supported, ans.to_dict()
    assert "brontosaurus" in ans.answer.lower()
    top = ans.citations[0]
    assert "Brontosaurus" in top.quote and doc.source.text[top.char_start:top.char_end] == top.quote
    assert ans.mark and doc.source.text[ans.mark[0]:ans.mark[1]] == "Brontosaurus"
    # the table of contents matches "Morlocks", "Darkness", "Time Traveller" (without the filter it was
    # candidate [2] here), and is no candidate
    other = doc.ask("What did the Morlocks' eyes shine like out of the darkness around the Time Traveller?",
                    wait=False)
    assert len(other.citations) >= 3 and not any(mostly_headings(c.quote) for c in other.citations)
    d = ans.to_dict()
    assert len(d["readings"]) == len(ans.citations) >= 2
    assert any(r["supported"] for r in d["readings"]) and d["mark"] == list(ans.mark)


def test_a_table_of_contents_is_mostly_headings_and_prose_is_not():
    text = (REPO / "samples" / "time-machine.txt").read_text(encoding="utf-8")
    contents = text[text.index("CONTENTS"):text.index("CONTENTS") + 300]
    assert mostly_headings(contents)
    assert not mostly_headings("Here and there out of the darkness round me the Morlocks’ eyes shone like "
                               "carbuncles. The camphor flickered and went out.")
    assert not mostly_headings("XI. The Palace of Green Porcelain")  # a heading alone: too short to judge
