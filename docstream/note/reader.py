"""The reading pass: chunks flow through the sink cache in order; a note per chunk; a rolling summary.

Design choices:
- Cache layout while reading: [sinks | pinned: reading instruction + rolling summary | recent document text].
  The sinks are the first tokens of the chat prefix, so re-pinning a new summary keeps them unchanged.
- After each chunk the model writes its note *in the stream* (the recent window is still in its cache) as an
  aside: prompt and note are truncated away afterwards, so the cache holds document text only.
- A note is one sentence + a "Tags:" line, capped at `note_tokens` with stop strings; YAKE keywords and
  repeated capitalised names are added as tags (no download, deterministic).
- Each note commits in its own transaction; resuming starts at the first chunk without a note, after
  refilling the window with the text just before it, so a resumed read ends with the same chunks and notes.
- The rolling summary is refreshed every `summary_every` chunks and at every chapter end, in a fresh cache
  (from the previous summary + the notes since), stored, and re-pinned.
- Chapter summaries and the book summary are made from notes by `summarize.merge`, hierarchically, so every
  merge fits the window; they are (re)made at the end for any chapter that lacks one (also after a resume).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import prompts
from ..errors import SettingsError
from .tags import chunk_tags, parse_note

NO_SUMMARY = "Nothing yet; this is the beginning."


@dataclass(frozen=True)
class ReadSettings:
    """Everything that changes what a read produces; part of the index's identity."""

    window: int = 2048
    sinks: int = 4
    chunk_tokens: int = 0  # 0 = a quarter of the window
    summary_every: int = 8
    note_tokens: int = 40
    summary_tokens: int = 96
    max_pinned: int = 320

    def resolved(self, context_length: int) -> "ReadSettings":
        chunk = self.chunk_tokens or max(64, self.window // 4)
        s = ReadSettings(**{**asdict(self), "chunk_tokens": chunk})
        if s.sinks < 1:
            raise SettingsError(f"--sinks {s.sinks}: use at least 1 attention sink (the default is 4)")
        if chunk > s.window - s.note_tokens - 64:
            raise SettingsError(f"--chunk-tokens {chunk} does not fit the window of {s.window} with room for a note "
                                f"— use --chunk-tokens ≤ {max(0, s.window - s.note_tokens - 64)} or a larger --window")
        total = s.sinks + s.max_pinned + s.window
        if total > context_length:
            raise SettingsError(f"--window {s.window} is too large: sinks + pinned + window = {total} exceeds the "
                                f"model's context of {context_length} — use --window ≤ "
                                f"{context_length - s.sinks - s.max_pinned}")
        return s

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class ReadEvent:
    """A progress event; `kind` is start | chunk | summary | chapter | book | done."""

    kind: str
    chunk: int = 0
    total: int = 0
    chapter: str = ""
    tokens: int = 0  # document tokens prefilled so far in this run
    elapsed: float = 0.0
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed if self.elapsed > 0 else 0.0


def _chapter_label(chunk: Any) -> str:
    return chunk.chapter_title or f"Section {chunk.chapter + 1}"


def read_events(doc: Any, index: Any, engine: Any, settings: ReadSettings, chunks: list[Any],
                chapters: list[Any]) -> Iterator[ReadEvent]:
    """Read the chunks without a note (all, or the rest after an interruption). Index rows are already there."""
    from .. import summarize

    t0 = time.perf_counter()
    total = len(chunks)
    start = index.first_unnoted_chunk()
    title = doc.title
    rolling = index.latest_summary("rolling")
    summary = rolling.text if rolling else NO_SUMMARY
    yield ReadEvent("start", chunk=start if start is not None else total, total=total)

    if start is not None:
        stream = engine.stream(sinks=settings.sinks, window=settings.window, max_pinned=settings.max_pinned)
        intro = prompts.get("read_user").render(title=title)
        stream.start(prompts.get("read_system").render(title=title, summary=summary), intro)
        _refill(stream, chunks, start, settings)
        since: list[str] = []
        fed = 0
        for c in chunks[start:]:
            fed += stream.feed(c.text)
            note = prompts.get("note").render(position=f"{c.ordinal + 1} of {total}", chapter=_chapter_label(c))
            raw = stream.aside(note, settings.note_tokens, stop=("<|im_end|>", "\n\n", "<|endoftext|>"))
            gist, model_tags = parse_note(raw)
            if not gist:  # the model wrote nothing useful: keep an extractive gist rather than an empty note
                gist = " ".join(c.text.split()[:25])
            index.add_note(c.ordinal, gist, chunk_tags(c.text, model_tags))
            since.append(gist)
            yield ReadEvent("chunk", chunk=c.ordinal + 1, total=total, chapter=_chapter_label(c), tokens=fed,
                            elapsed=time.perf_counter() - t0, text=gist)
            last_of_chapter = c.ordinal + 1 == total or chunks[c.ordinal + 1].chapter != c.chapter
            if since and (len(since) >= settings.summary_every or last_of_chapter):
                summary = summarize.rolling(engine, title, summary if summary != NO_SUMMARY else "(none)",
                                            since, f"{c.ordinal + 1} of {total} passages", settings)
                index.add_summary("rolling", summary, 0, c.ordinal)
                since = []
                stream.repin(prompts.get("read_system").render(title=title, summary=summary), intro)
                yield ReadEvent("summary", chunk=c.ordinal + 1, total=total, chapter=_chapter_label(c),
                                tokens=fed, elapsed=time.perf_counter() - t0, text=summary)

    for ev in summarize.build_hierarchy(index, engine, title, chapters, settings):
        yield ReadEvent(ev[0], chunk=total, total=total, chapter=ev[1], elapsed=time.perf_counter() - t0,
                        text=ev[2])
    index.set_status("done")
    yield ReadEvent("done", chunk=total, total=total, elapsed=time.perf_counter() - t0)


def _refill(stream: Any, chunks: list[Any], start: int, settings: ReadSettings) -> None:
    """On resume, feed the chunks just before `start` that fit the window (no notes) so context matches."""
    budget = settings.window - settings.chunk_tokens
    first = start
    used = 0
    while first > 0 and used + chunks[first - 1].tokens <= budget:
        first -= 1
        used += chunks[first].tokens
    for c in chunks[first:start]:
        stream.feed(c.text)
