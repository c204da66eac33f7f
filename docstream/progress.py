"""Reading progress on stderr: a `rich` bar (chunks done/total, tokens/s, ETA, current chapter).

Silent when asked (`--quiet`, `--json`) or when stderr is not a terminal. Consumes the reader's events so
the API and the CLI share one loop.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any


def consume(events: Iterator[Any], progress: bool = False, label: str = "") -> tuple[Any, int]:
    """Run the events to the end; return (last event, document tokens read in this run)."""
    last = None
    tokens = 0
    if not (progress and sys.stderr.isatty()):
        for ev in events:
            last = ev
            tokens = max(tokens, ev.tokens)
        return last, tokens

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cols = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
            TextColumn("{task.fields[rate]:>6.0f} tok/s"), TimeRemainingColumn(), TextColumn("{task.fields[chapter]}"))
    with Progress(*cols, console=Console(stderr=True), transient=False) as bar:
        task = None
        for ev in events:
            last = ev
            tokens = max(tokens, ev.tokens)
            if task is None:
                task = bar.add_task(label[:30] or "reading", total=ev.total, completed=ev.chunk, rate=0.0,
                                    chapter="")
            if ev.kind == "chunk":
                bar.update(task, completed=ev.chunk, rate=ev.tokens_per_s, chapter=ev.chapter[:40])
            elif ev.kind in ("chapter", "book"):
                bar.update(task, chapter=f"summarizing {ev.chapter[:30] or 'the book'}")
            elif ev.kind == "windows":
                bar.update(task, chapter=ev.chapter)
            elif ev.kind == "done":
                bar.update(task, completed=ev.total, chapter="done")
    return last, tokens
