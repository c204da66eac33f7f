"""The hierarchical merge and the chapter summary.

Design choices:
- `reduce()` is the one hierarchical merge: it packs consecutive texts into groups whose *whole prompt* fits
  the window (prompt + output <= window), summarises each group into a part short enough that two parts
  merge within the window, and repeats until everything fits one last prompt. No input is ever cut; a
  single text too long for a prompt is an assertion failure (notes and summaries are bounded by their
  generation caps, so it cannot happen).
- Chapter summaries are made from the chapter's notes, started "In this chapter, <the name its notes use
  most>": a 135M model then tells what that person does. `chapter_fork` is the same prompt as a fork,
  decoded later in a batch with the reading pass's notes, and it ends with its first sentence: a chapter line
  is one sentence, and what the model wrote after it was mostly talk the strict gate drops (on The Time
  Machine it made 40 % of a read's decoded tokens, and the longest rows of its decodes).
- Every merge output passes `grounding.ground_part`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import prompts
from ..backend.base import Backend
from ..read.tags import names
from .grounding import Part, ground_part

CHAPTER_PREFILL = "In this chapter,"
STOP = ("<|im_end|>", "<|endoftext|>", "\n\n")


def _system() -> str:
    return prompts.get("system").render()


def _tokens_for_words(words: int) -> int:
    return int(words * 1.6) + 16


def reduce(engine: Backend, texts: list[str], render: Callable[[list[str]], str], max_new_tokens: int,
           window: int, source: str, prefill: str = "",
           on_merge: Callable[[int, int], None] | None = None) -> str:
    """Summarise `texts` hierarchically so that every prompt + output fits `window` tokens.

    When everything fits one prompt, that is the only merge (its output may use `max_new_tokens`). Otherwise
    consecutive texts are packed into groups and each group is merged into a *part* of at most `part`
    tokens, small enough that two parts and the output of their merge fit the window together — so from the
    second level on every level at least halves, whatever the window and the output length asked for."""
    assert texts, "nothing to summarise"
    part = min(max_new_tokens, (window - engine.count(render([])) - 16) // 3)
    assert part >= 8, f"a merge window of {window} tokens is too small to merge anything"

    def merge(group: list[str], cap: int) -> str:
        prompt = render(group)
        n = engine.count(prompt)
        assert n + cap <= window, f"a single text of {n} tokens does not fit a merge window of {window}"
        if on_merge:
            on_merge(n, cap)
        out = engine.complete_text(_system(), prompt, cap, stop=STOP, prefill=prefill)
        return ground_part(engine, Part(render, group, prefill, cap), out, source)

    level, depth = list(texts), 0
    while engine.count(render(level)) + max_new_tokens > window:
        groups: list[list[str]] = [[]]
        for t in level:
            if groups[-1] and engine.count(render(groups[-1] + [t])) + part > window:
                groups.append([])
            groups[-1].append(t)
        outs = [merge(g, part) for g in groups]
        assert depth == 0 or len(outs) < len(level), "a merge level must shrink"
        level, depth = outs, depth + 1
    return merge(level, max_new_tokens)


def _chapter_prompt(title: str, chapter: str, notes: list[str]) -> str:
    return prompts.get("chapter_summary").render(title=title, chapter=chapter, notes="\n".join(f"- {n}" for n in notes))


def chapter_prefill(notes: list[str]) -> str:
    """"In this chapter," and the name its notes use most: a small model then tells what that person does."""
    return f"{CHAPTER_PREFILL} {next(iter(names(' '.join(notes), top=1)), '')}".strip()


def chapter_summary(engine: Backend, title: str, chapter: str, notes: list[str], window: int, source: str) -> str:
    return reduce(engine, notes, lambda items: _chapter_prompt(title, chapter, items), 80, window, source,
                  prefill=chapter_prefill(notes))


def chapter_fork(engine: Backend, title: str, chapter: str, notes: list[str], max_new_tokens: int, window: int
                 ) -> tuple[Any, str] | None:
    """The chapter summary as a fork (decoded later, batched with notes) and the words it starts with; None if
    the notes need a hierarchical merge (`chapter_summary`) because they do not fit one prompt."""
    prompt = _chapter_prompt(title, chapter, notes)
    if engine.count(prompt) > window - max_new_tokens - 64:
        return None
    start = chapter_prefill(notes)
    return engine.prompt_fork(_system(), prompt, max_new_tokens, stop=STOP, prefill=start, sentence=True), start
