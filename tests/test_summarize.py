"""Summaries: the hierarchical merge fits every prompt in the window; grounding keeps only what the book supports;
outputs are started with the name the text uses most. The tiny random Llama writes nonsense: the merge
tests assert the machinery (sizes, levels), the grounding tests use fixed strings.
"""
import re

import pytest

from docstream import summarize
from docstream.backend.local import Engine
from docstream.index.db import Index
from docstream.read.tags import join_lead, lead_name

SOURCE = "Peter Matheny met Gus and Doran on Mars. Pete laughed. Gus went home to Earth in 1984."


@pytest.fixture(scope="module")
def engine(tiny_lm):
    return Engine(tiny_lm)


@pytest.mark.parametrize("window", [220, 300, 400])
def test_every_merge_fits_the_window(engine, window):
    texts = [f"Part {i}: Peter Matheny met Gus near the dome and they talked about the rocket." for i in range(30)]
    merges = []
    out = summarize.reduce(engine, texts, lambda items: "Summarize:\n" + "\n".join(items), 24, window, SOURCE,
                           prefill="In this story,", on_merge=lambda n, new: merges.append((n, new)))
    assert isinstance(out, str)
    assert len(merges) > 2  # more than one level: 30 parts never fit one prompt at these windows
    assert all(n + new <= window for n, new in merges), merges
    total = sum(engine.count(t) for t in texts)
    assert total > window  # the input really was longer than the window: nothing was cut to make it fit


def test_a_text_too_long_for_any_merge_is_an_error_not_a_cut(engine):
    with pytest.raises(AssertionError, match="does not fit"):
        summarize.reduce(engine, ["word " * 400], lambda items: "\n".join(items), 24, 200, SOURCE)


def test_grounded_drops_invented_names_lists_and_talk_about_the_text():
    text = ("The key events are: 1. Peter Matheny met Gus. 2. Gus went home. "
            "The main action is the passage itself, which is a continuation of the original text. "
            "Captain Zorblax arrived from Venus. Pete laughed a lot. Pete laughed a lot. And then")
    assert summarize.grounded(text, SOURCE) == "Peter Matheny met Gus. Gus went home. Pete laughed a lot."
    # names all found, but most of its words are not the story's: invented
    assert summarize.grounded("Gus is a skilled and cunning sorceress. Pete laughed.", SOURCE) == "Pete laughed."
    bullets = "The main people in the story are: - Peter Matheny - Pete - Gus"
    assert summarize.grounded(bullets, SOURCE) == "Peter Matheny"
    dashes = "Pete - a man of Mars - laughed in 1984. The end."
    assert summarize.grounded(dashes, SOURCE) == dashes  # a dash inside a sentence is not a list
    assert summarize.grounded("Then Zorblax wins.", SOURCE, fallback=["Gus went home."]) == "Gus went home."
    assert summarize.grounded("Then Zorblax wins.", SOURCE,  # a fallback is grounded too
                              fallback=["The passage is short. Gus went home."]) == "Gus went home."
    assert summarize.grounded("Gus left Mars in about 24 words. Pete laughed.", SOURCE) == "Pete laughed."
    # a number the story never states, in digits or words
    assert summarize.grounded("Gus went 40,000 miles. Pete laughed.", SOURCE) == "Pete laughed."
    assert summarize.grounded("Gus met seventeen men. Pete laughed.", SOURCE) == "Pete laughed."


@pytest.mark.parametrize("lead, text, expected", [
    ("Retief", "is sent to Flamme.", "Retief is sent to Flamme."),
    ("Retief", "'s plan works.", "Retief's plan works."),
    ("In this chapter, Alice", ", bored, follows the Rabbit.", "In this chapter, Alice, bored, follows the Rabbit."),
    ("", "Nothing to join.", "Nothing to join."),
])
def test_join_lead(lead, text, expected):
    assert join_lead(lead, text) == expected


def test_a_note_gives_up_once_its_whole_words_talk_about_the_text():
    from docstream.read.reader import _doomed

    doomed = _doomed("Alice")
    assert doomed("'s actions are described as")
    assert not doomed("'s actions are described")  # the last word may still go on
    assert doomed(" walks on. The narrative ")
    assert not doomed(" follows the rabbit into a hole")
    assert not doomed(" reads the narr")  # "narr…" may still become "narrow"
    assert not doomed(" looks at the stylish")  # "style" only as a whole word


def test_summaries_start_with_the_main_name():
    notes = ["Alice follows the White Rabbit.", "Alice falls down a hole.", "The Rabbit is late."]
    assert summarize.chapter_prefill(notes) == "In this chapter, Alice"
    assert summarize.chapter_prefill(["it rains all day."]) == "In this chapter,"
    group = ["Magnan frowns at Retief.", "Then Retief shouts at Magnan.", "Magnan leaves."]
    assert summarize.part_prefill(0, 3, group, ["Retief", "Georges"]) == "In this story, Retief"
    assert summarize.part_prefill(0, 1, group, []) == "In this story,"
    assert summarize.part_prefill(1, 3, group, ["Retief"]) == "Then Magnan"
    assert summarize.part_prefill(2, 3, group, ["Retief"]) == "In the end, Magnan"
    heading = ["Contempt of That is the title.", "Contempt of That, a story."]  # a heading, not a person
    assert summarize.part_prefill(1, 3, heading, ["Retief"]) == "Then"


@pytest.mark.parametrize("n, words, parts", [(14, 120, 5), (14, 250, 10), (14, 60, 2), (2, 250, 2), (1, 60, 1)])
def test_a_book_summary_has_one_part_per_25_words_each_from_a_run_of_its_inputs(n, words, parts):
    texts = [f"Note {i} " + "word " * (5 + 7 * (i % 3)) for i in range(n)]
    groups = summarize.book_groups(texts, words)
    assert len(groups) == parts
    assert [t for g in groups for t in g] == texts  # every input once, in order
    sizes = [sum(len(t.split()) for t in g) for g in groups]
    assert max(sizes) - min(sizes) <= max(len(t.split()) for t in texts) + 1  # runs of about equal length


def test_joined_parts_end_their_sentences_and_do_not_repeat():
    parts = ["In this story, Pete laughed. Gus left.", "Then Gus went home to Earth", "In the end, Gus left."]
    assert summarize.join_parts(parts) == ("In this story, Pete laughed. Gus left. Then Gus went home to Earth. "
                                           "In the end, Gus left.")
    assert summarize.join_parts(["Gus left.", "", "Gus  left."]) == "Gus left."
    assert summarize.join_parts(["Then Mr. Darcy came.", "Then Mr. Darcy came."]) == "Then Mr. Darcy came."


def test_notes_start_with_the_name_their_chunk_uses_most(home, tiny_dir, short_text):
    import docstream

    doc = docstream.open(short_text, model=str(tiny_dir), window=512, chunk_tokens=128)
    doc.read()
    with Index.open(doc.index_path) as ix:
        chunks = {c.ordinal: c for c in ix.chunks()}
        notes = ix.notes()
    led = [(n, lead_name(chunks[n.chunk].text)) for n in notes]
    assert sum(1 for _, name in led if name) >= 2  # the sample has named people in several chunks
    for n, name in led:
        if name and n.method == "model":  # an extractive note is a sentence of the chunk, as the book has it
            assert n.gist.startswith(name), (name, n.gist)
        if n.method == "extractive":
            assert " ".join(n.gist.rstrip(".").split()) in " ".join(chunks[n.chunk].text.split())


def test_lead_name_is_a_proper_noun_used_mid_sentence():
    assert lead_name("The Time Traveller smiled. 'No,' said the Time Traveller. The Time Traveller left.") \
        == "Time Traveller"
    assert lead_name("VI The Sunset of Mankind\n\nHowever, it was late. However, I went on.") == ""


def test_a_long_output_in_a_small_window_still_merges(engine):
    """A book summary of 120 tokens in a 300-token window: the parts are made shorter than the final
    output, so two of them always fit one merge and the levels shrink."""
    texts = [f"Chapter {i}: Peter Matheny met Gus near the dome and they talked about the rocket." for i in range(12)]
    merges = []
    summarize.reduce(engine, texts, lambda items: "Merge:\n" + "\n".join(items), 120, 300, SOURCE,
                     on_merge=lambda n, new: merges.append((n, new)))
    assert all(n + new <= 300 for n, new in merges) and merges[-1][1] == 120
    assert max(new for _, new in merges[:-1]) < 120


def test_book_summary_lengths_are_parts_in_order(home, tiny_dir, short_text, monkeypatch):
    """`summary(length=...)` writes one part per 25 words asked for (at most one per input), each from the next
    run of inputs, its prompt naming its place in the story; `--words` below 10 is refused."""
    from typer.testing import CliRunner

    import docstream
    from docstream.cli.main import app

    doc = docstream.open(short_text, model=str(tiny_dir), window=512, chunk_tokens=128)
    doc.read()
    parts_seen = []
    reduce = summarize.reduce

    def spy(engine, texts, render, max_new_tokens, window, source, prefill="", on_merge=None):
        parts_seen.append((texts, render([]), prefill))
        return reduce(engine, texts, render, max_new_tokens, window, source, prefill, on_merge)

    monkeypatch.setattr(summarize.book, "reduce", spy)  # book_summary merges each part with reduce()
    gists = [n.gist for n in doc.notes()]  # a 2-chapter text: the book summary is made from the notes
    for length, parts in (("short", 2), ("long", 10)):
        parts_seen.clear()
        assert doc.summary(level="book", length=length).strip()
        assert len(parts_seen) == parts
        assert [t for texts, _, _ in parts_seen for t in texts] == gists  # every note once, in order
        places = [re.search(r"What happens in (the \w+)", prompt).group(1) for _, prompt, _ in parts_seen]
        assert places == ["the beginning", *["the middle"] * (parts - 2), "the end"]
        assert parts_seen[0][2].startswith("In this story,") and parts_seen[-1][2].startswith("In the end,")
    res = CliRunner().invoke(app, ["summarize", str(short_text), "-m", str(tiny_dir), "--window", "512",
                                   "--chunk-tokens", "128", "--words", "5"])
    assert res.exit_code == 2 and "at least 10 words" in res.stderr


def test_vacuous_chapter_lines_are_stored_as_the_chapters_key_sentence(home, tiny_dir, short_text):
    """The content gate while reading: the tiny random model writes words the chapter never uses, so every
    chapter line is replaced by a sentence of its chapter, marked `extractive`; `summarize --format json`
    shows the method of every chapter line and note."""
    import json

    from typer.testing import CliRunner

    import docstream
    from docstream.cli.main import app
    from docstream.summarize import content

    doc = docstream.open(short_text, model=str(tiny_dir), window=512, chunk_tokens=128)
    doc.read()
    with Index.open(doc.index_path) as ix:
        spans = {c.index: (c.char_start, c.char_end) for c in ix.chapters()}
        chs = ix.summaries("chapter")
    text = doc.source.text
    assert len(chs) == len(spans) >= 2
    for s in chs:
        chapter = text[slice(*spans[s.chapter])]
        assert s.method in ("model", "extractive")
        if s.method == "extractive":
            assert s.text == content.key_sentence(chapter, text[doc.source.body_start:doc.source.body_end])
            assert " ".join(s.text.rstrip(".").split()) in " ".join(chapter.split())
        assert not content.is_vacuous(s.text, chapter)
    # random weights: no note the model writes is grounded, so notes are the chunks' key sentences (and chapter
    # lines made from them pass the gate)
    assert any(n.method == "extractive" for n in doc.notes())
    res = CliRunner().invoke(app, ["summarize", str(short_text), "-m", str(tiny_dir), "--window", "512",
                                   "--chunk-tokens", "128", "--level", "chapter", "--format", "json"])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert [c["method"] for c in data["chapters"]] == [s.method for s in chs]
    assert {n["method"] for n in data["notes"]} <= {"model", "extractive"}
    # a model line stored by an older, laxer gate: shown as the chapter's key sentence, kept in the index
    s = next(s for s in chs if s.chapter == min(spans))
    odd = "In this chapter, Judith Boss dreams of quantum spaceships."
    with Index.open(doc.index_path) as ix:
        ix.db.conn.execute("UPDATE summaries SET text = ?, method = 'model' WHERE id = ?", (odd, s.id))
        ix.db.conn.commit()
    title, shown = doc.summary("chapter")[0]
    chapter = text[slice(*spans[s.chapter])]
    assert (shown.text, shown.method) == (content.key_sentence(chapter, doc.source.body), "extractive")
    with Index.open(doc.index_path) as ix:
        assert ix.summaries("chapter", chapter=s.chapter)[0].text == odd
    # `fresh`: the book summary made now from today's lines and notes; the stored one stays
    stored = doc.summary("book")
    made = doc.summary("book", fresh=True)
    assert isinstance(made, str) and made.strip()
    with Index.open(doc.index_path) as ix:
        assert ix.latest_summary("book").text == stored


def test_the_rolling_summary_grows_at_its_end_and_drops_its_oldest_parts_together(engine):
    """New chapter lines go at the end (the pinned prefix before them is unchanged, so its keys are kept); when
    the room is full the oldest lines go at once, down to `ROLL_REFILL` of it, not one per re-pin."""
    from types import SimpleNamespace

    from docstream.read.reader import ROLL_REFILL, Reader
    from docstream.settings import ReadSettings

    r = object.__new__(Reader)
    r.engine, r.doc, r.settings = engine, SimpleNamespace(title="Alice"), ReadSettings(max_pinned=200)
    r.total, r.partial, r.roll_start, r.chapter_text = 40, None, 0, {}
    r.titles = {ch: f"Chapter {ch + 1}" for ch in range(12)}
    budget = r.settings.max_pinned - engine.count(r._system("") + r._intro()) - 8
    texts, cuts = [], 0
    for ch in range(12):
        r.last_noted = 3 * ch + 2
        r.chapter_text[ch] = f"Alice meets the {['Rabbit', 'Queen', 'Duchess'][ch % 3]} and runs to the garden {ch}."
        texts.append(r.rolling_text())
        assert engine.count(texts[-1]) <= budget
        assert texts[-1].endswith(f"Read {3 * ch + 3} of 40 passages.")
        body, before = texts[-1].rsplit(" Read ", 1)[0], texts[-2].rsplit(" Read ", 1)[0] if ch else ""
        if not body.startswith(before):  # a cut: the oldest lines went, down to the refill share
            cuts += 1
            assert engine.count(texts[-1]) <= budget * ROLL_REFILL
    assert texts[-1].startswith("Chapter ") and "garden 11." in texts[-1]
    assert 1 <= cuts <= 4  # 12 lines, about 5 fit: a cut every few chapters, not at every one


def test_a_chapter_line_is_one_sentence(engine):
    """The chapter summary fork asks for one sentence and ends with its first one (`sentence`, as a note does;
    the decoder stopping there is tested in test_generate), locally and as a remote request."""
    from docstream import prompts
    from docstream.backend.openai import RemoteEngine

    notes = ["Pete met Gus on Mars.", "Gus went home."]
    fork, start = summarize.chapter_fork(engine, "Mars", "I. Arrival", notes, 48, 400)
    assert fork.sentence and fork.max_new_tokens == 48 and start == "In this chapter, Gus"
    assert "in one sentence." in prompts.get("chapter_summary").render(title="t", chapter="c", notes="n")
    remote = RemoteEngine.__new__(RemoteEngine)  # no server: only the request it would send
    remote.count = engine.count
    req, _ = summarize.chapter_fork(remote, "Mars", "I. Arrival", notes, 48, 400)
    assert req.sentence and req.prefill == start


def test_a_chapter_line_with_nothing_grounded_is_the_chapters_key_sentence(home, tiny_dir, short_text):
    """A chapter whose notes fit one prompt: the tiny model's line is never grounded, so the stored line is the
    chapter's key sentence, marked `extractive` (not its last notes passed off as the model's line)."""
    import docstream
    from docstream.summarize import content

    doc = docstream.open(short_text, model=str(tiny_dir), window=1024, chunk_tokens=256)
    doc.read()
    text, body = doc.source.text, doc.source.body
    with Index.open(doc.index_path) as ix:
        spans = {c.index: (c.char_start, c.char_end) for c in ix.chapters()}
        chs = ix.summaries("chapter")
        noted = [n.chapter for n in ix.notes()]
    assert len(chs) == len(spans) >= 2 and all(noted.count(s.chapter) > 1 for s in chs)
    for s in chs:
        assert (s.text, s.method) == (content.key_sentence(text[slice(*spans[s.chapter])], body), "extractive")
