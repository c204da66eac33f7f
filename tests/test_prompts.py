"""Every prompt file parses, declares exactly the variables it uses, and renders."""
import pytest

from docstream import prompts


def test_all_prompts_render():
    names = prompts.names()
    assert {"note", "read_system", "answer", "chapter_summary", "merge_summary"} <= set(names)
    for name in names:
        p = prompts.get(name)
        values = {v: f"<{v}>" for v in p.variables}
        out = p.render(**values)
        for v in p.variables:
            assert f"<{v}>" in out, (name, v)
        assert "{" + "question" + "}" not in out


def test_render_refuses_missing_and_unknown_variables():
    p = prompts.get("answer")
    with pytest.raises(AssertionError):
        p.render(question="q")
    with pytest.raises(AssertionError):
        p.render(question="q", title="t", summary="s", evidence="e", extra="x")


def test_values_are_not_reinterpreted():
    p = prompts.parse("t", "# variables: a\n---\nA={a}.\n")
    assert p.render(a="{a} {b}") == "A={a} {b}."


def test_undeclared_placeholder_is_refused():
    with pytest.raises(AssertionError):
        prompts.parse("t", "# variables: a\n---\n{a} {oops}\n")


def test_chat_layout_matches_template(tiny_lm):
    lay = prompts.chat_layout(tiny_lm.tokenizer)
    whole = tiny_lm.tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        add_generation_prompt=True, tokenize=False)
    assert lay.render("S", "U") == whole
