"""Prompt templates: files in `prompts/`, shipped inside the wheel as `docstream/prompts/`.

File format (plain text, so prompts can be read and edited without Python):

    # what this prompt is for (comment lines start with '#')
    # variables: question, context
    ---
    The template, with {question} and {context} placeholders.

Design choices:
- Placeholders are `{name}`; only *declared* names are substituted, so any other braces are literal and
  document text inserted as a value is never re-interpreted.
- `render()` refuses a missing or an unknown variable: a typo in a prompt file fails loudly, in tests.
- Loaded with `importlib.resources` from the installed package; in a source checkout (editable install)
  the repo's `prompts/` folder is used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Prompt:
    name: str
    variables: tuple[str, ...]
    template: str

    def render(self, **values: object) -> str:
        missing = set(self.variables) - set(values)
        extra = set(values) - set(self.variables)
        assert not missing and not extra, f"prompt {self.name}: missing {sorted(missing)}, unknown {sorted(extra)}"
        return _PLACEHOLDER.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], self.template)


def _prompt_dir() -> Path:
    packaged = resources.files("docstream") / "prompts"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "prompts"


def parse(name: str, text: str) -> Prompt:
    head, sep, body = text.partition("\n---\n")
    assert sep, f"prompt {name}: no '---' line between header and template"
    variables: tuple[str, ...] = ()
    for line in head.splitlines():
        m = re.match(r"#\s*variables:\s*(.*)", line)
        if m:
            variables = tuple(v.strip() for v in m[1].split(",") if v.strip())
    used = set(_PLACEHOLDER.findall(body))
    assert used <= set(variables), f"prompt {name}: undeclared {sorted(used - set(variables))}"
    assert set(variables) <= used, f"prompt {name}: declared but unused {sorted(set(variables) - used)}"
    return Prompt(name, variables, body[:-1] if body.endswith("\n") else body)


@lru_cache(maxsize=None)
def get(name: str) -> Prompt:
    path = _prompt_dir() / f"{name}.txt"
    return parse(name, path.read_text(encoding="utf-8"))


def names() -> list[str]:
    return sorted(p.stem for p in _prompt_dir().glob("*.txt"))


@dataclass(frozen=True)
class ChatLayout:
    """The model's chat template cut into the pieces docstream streams between.

    `system_open` + system text + `user_open` + user text + `assistant_open` is one whole chat turn, as the
    tokenizer's own template renders it; the reader streams the document into the user text.
    """

    system_open: str
    user_open: str
    assistant_open: str

    def render(self, system: str, user: str) -> str:
        return self.system_open + system + self.user_open + user + self.assistant_open


def chat_layout(tokenizer) -> ChatLayout:
    """Split the tokenizer's chat template around sentinels (works for any template that keeps content verbatim)."""
    s, u = "\x00SYSTEM\x00", "\x00USER\x00"
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": s}, {"role": "user", "content": u}],
            add_generation_prompt=True, tokenize=False)
    else:  # base models: a plain transcript
        text = f"{s}\n\n{u}\n\nAnswer: "
    pre, _, rest = text.partition(s)
    mid, _, post = rest.partition(u)
    assert mid and post is not None, "chat template drops its content"
    return ChatLayout(system_open=pre, user_open=mid, assistant_open=post)
