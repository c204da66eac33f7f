"""`docstream bench needle` and `docstream bench summary`: pure parts (needle placement, metrics) with known
answers, and both harnesses end to end with the tiny random Llama (its answers are nonsense: the tests check
the machinery — cells, files, JSON shapes, the heatmap — not the scores)."""
import json
import re

import pytest
from typer.testing import CliRunner

from docstream.bench import needle as nb
from docstream.bench import summary as sb
from docstream.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model is ~5x faster on one thread than on two when other processes share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(*args, code=0):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    return res


def _haystack(n: int = 120) -> str:
    things = ["river", "mill", "lantern", "harbor", "orchard", "engine", "market", "bridge", "garden", "tower"]
    return " ".join(f"The {things[i % 10]} number {i} stood near the {things[(i * 3) % 10]} for {i % 7 + 2} years."
                    for i in range(n))


# ---------------------------------------------------------------------------------------------- needle: pure
def test_needle_goes_at_the_sentence_boundary_before_the_depth():
    text = "Alpha one is here. Beta two is there! Gamma three? Delta four is last.Epsilon five"
    bounds = nb.sentence_boundaries(text)
    assert text.index("Epsilon") in bounds  # a full stop with no space after it still ends a sentence
    for depth in (0, 10, 25, 50, 75, 90, 100):
        new, s, e = nb.insert_needle(text, "NEEDLE here.", depth)
        assert new[s:e] == "NEEDLE here."
        assert (new[:s] + new[e:]).replace(" ", "") == text.replace(" ", "")  # nothing else changed
        pos = len(new[:s].rstrip())  # where the haystack was cut
        target = round(len(text) * depth / 100)
        assert pos in bounds and pos <= target
        assert not any(pos < b <= target for b in bounds)  # the *last* boundary before the depth
    assert nb.insert_needle(text, "N.", 0)[1] == 0
    new, s, e = nb.insert_needle(text, "N.", 100)
    assert e == len(new)
    with pytest.raises(Exception):
        nb.insert_needle(text, "N.", 120)


def test_build_texts_cuts_to_length_once(tiny_lm):
    from docstream.backend.local import Engine

    eng = Engine(tiny_lm)
    texts = nb.build_texts(_haystack(), eng.tokenizer, [300, 600], [0, 50, 100], nb.NEEDLE, eng.count)
    assert [(t["length"], t["depth"]) for t in texts] == [(n, d) for n in (300, 600) for d in (0, 50, 100)]
    for t in texts:
        assert t["text"][t["needle_start"]:t["needle_end"]] == nb.NEEDLE
        assert abs(t["tokens"] - t["length"]) <= 3
        before = t["text"][:t["needle_start"]].rstrip()
        if t["depth"] < 100:  # 100 = the very end (the cut may end mid-sentence)
            assert not before or before.endswith(".")
        else:
            assert t["needle_end"] == len(t["text"])
    mid = texts[4]  # 600 tokens, depth 50
    assert 0.35 < mid["needle_start"] / len(mid["text"]) <= 0.5
    short = nb.build_texts("One short sentence. Another one.", eng.tokenizer, [400], [50], "N.", eng.count)
    assert abs(short[0]["tokens"] - 400) <= 3  # a short haystack is repeated


def test_scoring():
    assert nb.is_correct("Eat a Sandwich and sit in dolores  park.", nb.ANSWER)
    assert not nb.is_correct("Eat a sandwich.", nb.ANSWER)


def test_missing_haystack_is_a_clear_error(tmp_path):
    res = run("bench", "needle", "--haystack", tmp_path / "nope", code=2)
    assert "Error:" in res.stderr and "nope" in res.stderr


# ---------------------------------------------------------------------------------------------- needle: harness
def test_needle_harness_end_to_end(home, tiny_dir, tmp_path):
    hay = tmp_path / "hay"
    hay.mkdir()
    text = _haystack()
    (hay / "b.txt").write_text(text[len(text) // 2:])
    (hay / "a.txt").write_text(text[:len(text) // 2])
    (hay / "README.md").write_text("not part of the haystack")
    out = tmp_path / "out"
    res = run("bench", "needle", "--haystack", hay, "--lengths", "300,600", "--depths", "0,50,100",
              "--modes", "docstream,stream,truncate", "--out", out, "-m", tiny_dir, "--window", "512", "--json")
    data = json.loads(res.stdout)
    assert data == json.loads((out / "needle.json").read_text()) and data["complete"]
    assert data["haystack_files"] == 2
    cells = {(c["mode"], c["length"], c["depth"]): c for c in data["cells"]}
    assert set(cells) == {(m, n, d) for m in nb.MODES for n in (300, 600) for d in (0, 50, 100)}
    for (mode, n, d), c in cells.items():
        assert "error" not in c, c
        assert isinstance(c["correct"], bool) and c["seconds"] > 0
        assert (c["recall"] is None) == (mode != "docstream")
        body = open(c["text"], encoding="utf-8").read()
        assert body[c["needle_start"]:c["needle_end"]] == nb.NEEDLE
    assert len(list((out / "texts").glob("*/*.txt"))) == 6  # one file per (length, depth), shared by the modes
    assert (out / "needle.png").read_bytes()[:4] == b"\x89PNG"
    assert set(data["summary"]) == set(nb.MODES)
    assert data["summary"]["docstream"]["recall"] is not None and data["summary"]["stream"]["recall"] is None
    assert "[18/18]" in res.stderr  # progress lines

    # The same grid again reuses every index (identical texts → identical files → same index).
    again = json.loads(run("bench", "needle", "--haystack", hay, "--lengths", "300", "--depths", "50",
                           "--modes", "docstream", "--out", out, "-m", tiny_dir, "--window", "512",
                           "--json").stdout)
    assert again["cells"][0]["index_reused"] is True
    table = nb.format_table(data)
    assert "docstream" in table and "recall" in table


# ---------------------------------------------------------------------------------------------- summary: metrics
def test_name_tokens_skip_sentence_starts():
    text = ('Yesterday Alice met Bob in Paris. She paid 12 dollars. They saw Mr. Hyde. He said, "Go home." '
            'Then Carl left.')
    assert sb.name_tokens(text) == ["Alice", "Bob", "Paris", "12", "Hyde", "Carl"]


def test_faithfulness():
    story = "Alice and Bob went to London. It cost 12 dollars. Bob's sister was there."
    assert sb.faithfulness("Then Alice met Bob in Paris. She paid 12 dollars.", story) == (0.75, ["Paris"])
    assert sb.faithfulness("Then Alice met Bob's sister.", story) == (1.0, [])
    assert sb.faithfulness("nothing named here.", story) == (None, [])


def test_coverage():
    story = ("Then Alice ran. Then Alice sat. Then Alice slept. Later Bob came, and Bob left. Then Carol waved. "
             "On a Monday Monday Monday it rained.")
    assert sb.top_names(story, 2) == ["Alice", "Bob"]
    assert "Monday" not in sb.top_names(story)
    assert sb.coverage("The story of alice.", story, k=2) == (0.5, ["Alice"])
    assert sb.coverage("Nobody.", story, k=3) == (0.0, [])
    assert sb.coverage("x", "no names at all.") == (None, [])


def test_rouge_max_and_mean_over_references():
    refs = ["the cat sat on the mat", "a dog barked at the moon all night"]
    r = sb.rouge("the cat sat on the mat", refs)
    assert r["rouge1"] == 1.0 and r["rougeL"] == 1.0 and r["rouge2"] == 1.0
    assert 0.5 <= r["rouge1_mean"] < 1.0
    assert sb.rouge("", refs)["rouge1"] == 0.0
    rows = [{"method": "a", "rouge1": 1.0, "faithfulness": None, "coverage": 0.5},
            {"method": "a", "rouge1": 0.5, "faithfulness": 0.8, "coverage": 1.0},
            {"method": "a", "error": "x"}]
    agg = sb.aggregate(rows, ["a"])["a"]
    assert agg["rouge1"] == 0.75 and agg["faithfulness"] == 0.8 and agg["coverage"] == 0.75
    assert agg["stories"] == 2 and agg["errors"] == 1 and agg["rouge2"] is None


def test_equal_length_cuts_docstream_to_each_baselines_word_count():
    refs = ["the cat sat on the mat"]
    items = [{"references": refs}]
    rows = [{"story": 0, "method": "docstream", "summary": "the cat sat on the mat and then many other words"},
            {"story": 0, "method": "stream", "summary": "a dog sat somewhere else", "rougeL": 0.2, "rougeL_mean": 0.2}]
    e = sb.equal_length(rows, items)["stream"]
    assert e["words"] == 5 and e["stories"] == 1
    assert e["docstream_rougeL"] == sb.rouge("the cat sat on the", refs)["rougeL"]
    assert e["rougeL"] == 0.2
    assert sb.equal_length(rows[:1], items) == {}  # no baseline row: nothing to compare


def test_oracle_summary_picks_the_storys_sentences_closest_to_the_references():
    story = ("The rain fell on the grey town all night. Mara found a brass key under the old bridge. "
             "Nobody in the town cared about the weather. Mara opened the lighthouse door with the key. "
             "The gulls were loud that morning.")
    refs = ["Mara finds a key under a bridge and opens the lighthouse with it."]
    got = sb.oracle_summary(story, refs, 17)
    assert got == "Mara found a brass key under the old bridge. Mara opened the lighthouse door with the key."
    assert sb.rouge(got, refs)["rougeL"] > sb.rouge(story, refs)["rougeL"]  # the rest only lowers precision
    assert sb.oracle_summary(story, refs, 12) in got.replace(". ", ".|").split("|")  # never over the target
    assert sb.oracle_summary(story, refs, 4) == ""  # no sentence is that short


# ---------------------------------------------------------------------------------------------- summary: harness
def _story(title: str, names: list[str], credit: str = "") -> str:
    a, b, c = names
    lines = [credit, title, "", f"By {a.upper()} WRITER", ""] if credit else [title, "", f"By {a.upper()} WRITER", ""]
    for i in range(25):
        lines.append(f"On day {i}, {a} walked to the harbor with {b}. They talked about the ship, and {c} listened "
                     f"from the deck while the gulls circled overhead.")
    return "\n".join(lines)


def test_summary_harness_end_to_end(home, tiny_dir, tmp_path):
    data = tmp_path / "dev.jsonl"
    rows = []
    for i, (title, names) in enumerate([("The Harbor Ship", ["Mara", "Tobin", "Ilse"]),
                                        ("Signals From Venus", ["Dorn", "Kessa", "Pell"])]):
        refs = [{"response_text": f"{names[0]} and {names[1]} talk about a ship while {names[2]} listens. ({k})"}
                for k in range(4)]
        credit = "Produced by Greg Weeks, Mary Meehan and the Online" if i else ""  # not the title
        rows.append({"metadata": {"passage_id": str(100 + i)}, "document": _story(title, names, credit),
                     "questions": [{"question_text": "What is the plot of the story?", "question_number": 1,
                                    "responses": refs},
                                   {"question_text": "Who is Mara?", "question_number": 2, "responses": refs[:1]}]})
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    res = run("bench", "summary", "--data", data, "--out", out, "-m", tiny_dir, "--window", "512")
    table = res.stdout
    for m in sb.METHODS:
        assert re.search(rf"^{m}\s", table, re.M), table
    result = json.loads((out / "summary.json").read_text())
    assert result["complete"] and [s["title"] for s in result["stories"]] == ["The Harbor Ship", "Signals From Venus"]
    assert result["stories"][0]["top_names"][:3] == ["Mara", "Tobin", "Ilse"]
    assert [(r["story"], r["method"]) for r in result["rows"]] == [(s, m) for s in (0, 1) for m in sb.METHODS]
    for r in result["rows"]:
        assert "error" not in r, r
        assert {"rouge1", "rouge2", "rougeL", "rougeL_mean", "faithfulness", "coverage", "vacuous", "grounding",
                "summary"} <= set(r)
        assert r["vacuous"] is None or 0 <= r["vacuous"] <= 1
    assert re.search(r"^method\s.*vacuous\s+grounding", table, re.M), table
    assert set(result["table"]) == set(sb.METHODS)
    assert set(result["equal_length"]) == {"stream", "truncate", "oracle"}
    assert re.search(r"^at stream's length \(\d+ words, 2 stories\): docstream R-L", table, re.M), table
    assert any((out / "texts").glob("*/The Harbor Ship.txt"))  # the title names the file
    one = json.loads(run("bench", "summary", "--data", data, "--stories", "1", "--methods", "truncate",
                         "--out", tmp_path / "out1", "-m", tiny_dir, "--window", "512", "--words", "40",
                         "--json").stdout)
    assert len(one["rows"]) == 1 and one["rows"][0]["method"] == "truncate" and one["words"] == 40
    run("bench", "summary", "--data", data, "--methods", "nope", "--out", tmp_path / "o2", code=2)


# ---------------------------------------------------------------------------------------------- chapters
def test_chapters_harness_measures_every_chapter_line(home, tiny_dir, short_text, tmp_path):
    """`bench chapters` reads the book through the API, then measures each stored chapter line against its
    chapter: a row per chapter, the counts add up, `--books` filters by file name."""
    from docstream.bench import chapters as cb

    res = json.loads(run("bench", "chapters", short_text, "-m", tiny_dir, "--window", "512", "--json").stdout)
    book = res["books"][0]
    assert book["book"] == "short" and book["chapters"] == len(res["lines"]) >= 2
    assert book["with_line"] == sum(1 for x in res["lines"] if x["line"])
    for x in res["lines"]:
        assert x["method"] in ("model", "extractive", None)
        assert x["vacuous"] == any(r["vacuous"] for r in x["sentences"])
    assert book["narrates"] == sum(1 for x in res["lines"] if x["line"] and x["narrates"])
    assert res["total"]["chapters"] == book["chapters"]
    text = run("bench", "chapters", short_text, "-m", tiny_dir, "--window", "512").stdout
    assert re.search(r"^short\s+\d+\s+\d+", text, re.M) and re.search(r"^total\s", text, re.M)
    res = run("bench", "chapters", short_text, "--books", "nothing-like-this", "-m", tiny_dir, code=2)
    assert "nothing-like-this" in res.stderr
    assert cb.book_files([tmp_path / "a-alice.txt", tmp_path / "b-time.txt"], ("time",)) == [tmp_path / "b-time.txt"]


# ---------------------------------------------------------------------------------------------- read and batch
def test_read_and_batch_harnesses_end_to_end(home, tiny_dir, short_text, tmp_path):
    """`bench read` times a full read against a bare prefill of the same chunks; `bench batch` reads the
    same documents one at a time and in lockstep. The figures are the tiny model's: only their shape and
    consistency are checked."""
    r = json.loads(run("bench", "read", short_text, "-m", tiny_dir, "--window", "256", "--batch", "4",
                       "--json").stdout)
    assert r["status"] == "done" and r["chunks"] > 2 and r["tokens"] > 0 and r["decode_tokens"] > 0
    assert r["ratio"] > 1  # notes and summaries cost something on top of the bare prefill of the same chunks
    assert r["prefill_s"] == pytest.approx((r["prefill_before_s"] + r["prefill_after_s"]) / 2, abs=0.06)
    assert {"prefill", "decode"} <= set(r["seconds_in"])
    b = json.loads(run("bench", "batch", short_text, "--docs", "3", "--tokens", "200", "--width", "3",
                       "--window", "256", "-m", tiny_dir, "--json").stdout)
    one, many = b["runs"]
    assert (one["width"], many["width"]) == (1, 3) and one["chunks"] == many["chunks"] > 3
    for x in (one, many):
        assert x["decode_tokens"] > 0 and x["decode_tok_s"] > 0 and "decode" in x["seconds_in"]
    assert b["decode_tok_s_ratio"] == pytest.approx(many["decode_tok_s"] / one["decode_tok_s"], abs=0.01)
    run("bench", "batch", tmp_path / "missing.txt", "--docs", "1", "-m", tiny_dir, code=2)
