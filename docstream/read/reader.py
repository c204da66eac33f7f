"""The reading pass: chunks flow through the sink cache in order; a note per chunk; a rolling summary.

Design choices:
- Cache layout while reading: [sinks | pinned: reading instruction + rolling summary | recent document text].
  The sinks are the first tokens of the chat prefix, so re-pinning a new summary keeps them unchanged.
- Each chunk is fed *in the stream* together with the note prompt, in one forward pass, and the state is
  copied out as a fork (`Stream.fork`); the prompt is removed, so the cache holds document text only. Once
  `POOL * batch` forks wait they are decoded in rows of `batch` (`Engine.decode`), a finished row taking the
  next fork: generation is the cost of reading, and a CPU decodes 8 rows for about the price of 2.
- A note's fork keeps sinks + pinned + the last `note_context` window tokens (default: the chunk itself): at
  batch 16 reading the KV (~46 KB per token for SmolLM2-135M in fp32) costs more than reading the weights, so
  a shorter fork decodes faster (the prompt itself was computed with the whole window).
- A note is one sentence about someone: its answer is started with the name the chunk uses most (from the
  text itself), which keeps a 135M model on content instead of talk about "the passage" or "the note".
  A passage that names nobody goes on with the name most notes started with (first-person narrators).
  A note may not repeat any 4-gram of the last `RECENT_NOTES` notes, of the pinned rolling summary or of
  the notes decoded with it: a 135M model otherwise copies them, and every note of a chapter reads the same
  ("X is introduced as a mysterious and ancient ship"). Decoding stops at the first sentence end (or the
  line end, or `note_tokens`), or as soon as its words so far hold a `META` phrase: the gate would drop it;
  YAKE keywords and repeated capitalised names are added as tags (no download, deterministic).
- Summaries are forks too, decoded with a later batch of notes once `SUMMARY_BATCH` are waiting (they run longer
  than notes, so their extra steps are shared): at each chapter end a
  chapter summary (one sentence, from the chapter's notes), and every `summary_every` chunks inside a long chapter a
  "chapter so far" summary. The **rolling summary** pinned after the sinks is composed from these
  model-written pieces — the latest chapter summaries that fit, the current chapter so far, "read X of Y
  passages" — stored as level `rolling` and re-pinned each time one of them arrives (so it lags a few
  batches). New pieces go at its end, and when it is full the oldest are dropped down to 60 % of the room:
  most re-pins then share a long prefix with the pinned region before, whose keys the cache keeps.
- Each note commits in its own transaction; resuming starts at the first chunk without a note, after
  refilling the window with the text just before it, so a resumed read ends with the same chunks and notes.
- Many documents read in lockstep (`drive` with several `Reader`s): each has its own stream; their forks
  share the batched decode. At the end, a decode waits until no reader can fork anything more, and book
  summaries wait for the other readers' last chapter summaries: every row of the long final decodes is used.
- The content gate (`summarize.content.gate`): a note or chapter summary sentence that talks about the text
  ("told in a narrative style") or whose content words the chunk/chapter does not use is dropped; when
  nothing is left, the key sentence of the chunk or chapter (the book's own words) is stored instead, and
  the row's `method` says "extractive". An extractive line that says what happens beats one that says nothing.
- The book summary's parts (`summarize.book_parts`) are forks too, once every chapter summary is in
  (documents read together share their decode); when a part's inputs need more than one merge, or chapter
  summaries are missing after a resume, `finish` merges hierarchically (`summarize`) instead.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import prompts, summarize
from ..index.dense import embed_windows, embed_words
from ..summarize import content
from ..backend.base import Backend
from ..settings import ReadSettings
from .tags import chunk_tags, join_lead, lead_name, parse_note

NO_SUMMARY = "Nothing yet; this is the beginning."
NOTE_STOP = ("<|im_end|>", "\n", "<|endoftext|>")
CHAPTER_TOKENS = 48
SUMMARY_BATCH = 4  # summary forks wait until this many can share the decode steps after the notes end
RECENT_NOTES = 8  # a note may not repeat a 4-gram of the last notes or of the pinned summary (loops otherwise)
POOL = 3  # forks waiting per decode row: a row whose note ended takes the next fork (continuous batching). A
# decode lasts as long as its longest row (a summary), so more notes per decode keep its rows full: on The Time
# Machine decode took 24.3 s at 2, 19.6 s at 3, 18.1 s at 4 (each fork ~20 MB; the rolling summary lags more)
_PARTIAL_WORD = re.compile(r"\w+$")  # a word that the next token may still lengthen ("style" of "stylish")
ROLL_REFILL = 0.6  # a full rolling summary drops its oldest parts down to this share of the pinned room
NOTE_KEY_WORDS = 25  # an extractive note (the chunk's key sentence) is cut to about this many words
@dataclass
class ReadEvent:
    """A progress event; `kind` is start | chunk | summary | chapter | book | windows | done."""

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


@dataclass
class _Job:
    kind: str  # note | chapter | partial | book (one part of it)
    fork: Any
    chunk: Any = None  # the chunk row, for notes
    chapter: int = -1  # for summaries
    chunks: tuple[int, int] = (0, 0)  # chunk span a summary covers
    lead: str = ""  # words the output was started with (part of its prompt, so not in the decoded text)
    part: Any = None  # for a book summary part: its `summarize.Part` (inputs for the fallback, token cap)


def _doomed(lead: str) -> Callable[[str], bool]:
    """A note's `give_up` test: its whole words so far (after `lead`) already hold a `META` phrase, so the content
    gate will replace it by the chunk's key sentence; decoding the rest of it would be wasted."""
    return lambda text: content.meta_phrase(join_lead(lead, _PARTIAL_WORD.sub("", text))) is not None


def _chapter_label(chunk: Any) -> str:
    return chunk.chapter_title or f"Section {chunk.chapter + 1}"


class Reader:
    """One document's reading pass as small steps: `advance` feeds a chunk and returns forks to decode,
    `complete` stores a decoded fork. `drive` runs one or many readers to the end."""

    def __init__(self, doc: Any, index: Any, engine: Backend, settings: ReadSettings, chunks: list[Any],
                 chapters: list[Any]):
        self.doc, self.index, self.engine, self.settings = doc, index, engine, settings
        self.chunks, self.total = chunks, len(chunks)
        self.titles = {c.index: c.title for c in chapters}
        self.spans = {c.index: (c.char_start, c.char_end) for c in chapters}
        self.book = doc.text[doc.body_start:doc.body_end] or doc.text  # its names are left out of grounding
        self.t0 = time.perf_counter()
        self.fed = 0
        start = index.first_unnoted_chunk()
        self.next = self.total if start is None else start
        self.notes: dict[int, list[tuple[int, str]]] = {}  # chapter -> [(chunk, gist)]
        noted = index.notes()
        for n in noted:
            self.notes.setdefault(n.chapter, []).append((n.chunk, n.gist))
        self.chapter_text = {s.chapter: s.text for s in index.summaries("chapter")}
        self.partial: tuple[int, str] | None = None
        self.roll_start = 0  # first chapter summary still in the rolling summary
        self.due: list[tuple[str, int]] = []  # summaries to fork at the next advance
        self.in_flight = 0  # jobs handed out by `advance` and not yet `complete`d
        self.book_wanted = not index.summaries("book")  # the book summary is forked once all else is done
        self.book_parts: list[str | None] = []  # its parts as they are decoded
        self.last_noted = self.next - 1
        self.recent = [n.gist for n in noted][-RECENT_NOTES:]  # a note must not copy these ...
        self.pinned = NO_SUMMARY  # ... nor the rolling summary pinned in the cache
        self.prompt = prompts.get("note").render()
        self.leads: Counter[str] = Counter()  # names notes were started with (a passage naming nobody: the top)
        self.avoid: tuple[Any, Any] = (None, None)  # (what it was made from, the n-gram dict forks share)
        self.stream = None
        if self.reading:
            rolling = index.latest_summary("rolling")
            self.pinned = rolling.text if rolling else NO_SUMMARY
            self.stream = engine.stream(sinks=settings.sinks, window=settings.window, max_pinned=settings.max_pinned)
            self.stream.start(self._system(self.pinned), self._intro())
            self._refill()

    # ------------------------------------------------------------------ state
    @property
    def reading(self) -> bool:
        return self.next < self.total

    @property
    def pending(self) -> bool:
        return self.reading or bool(self.due) or self.book_wanted

    @property
    def waiting(self) -> bool:
        """Nothing to fork until a decode returns (its chapter summary, or the book summary, depends on it)."""
        return not (self.reading or self.due or (self.book_wanted and not self.in_flight))

    def event(self, kind: str, chunk: int, chapter: str = "", text: str = "") -> ReadEvent:
        return ReadEvent(kind, chunk=chunk, total=self.total, chapter=chapter, tokens=self.fed,
                         elapsed=time.perf_counter() - self.t0, text=text)

    def _system(self, summary: str) -> str:
        return prompts.get("read_system").render(title=self.doc.title, summary=summary)

    def _intro(self) -> str:
        return prompts.get("read_user").render(title=self.doc.title)

    def _refill(self) -> None:
        """On resume, feed the chunks just before `next` that fit the window (no notes) so context matches."""
        budget = self.settings.window - self.settings.chunk_tokens
        first, used = self.next, 0
        while first > 0 and used + self.chunks[first - 1].tokens <= budget:
            first -= 1
            used += self.chunks[first].tokens
        for c in self.chunks[first:self.next]:
            self.stream.feed(c.text)

    # ------------------------------------------------------------------ steps
    def advance(self) -> list[_Job]:
        """Fork the summaries that became due, then feed the next chunk and fork its note."""
        jobs = [j for kind, ch in self.due if (j := self._summary_job(kind, ch)) is not None]
        self.due = []
        if self.reading:
            c = self.chunks[self.next]
            lead = lead_name(c.text) or next(iter(self.leads.most_common(1)), ("",))[0]
            if lead:
                self.leads[lead] += 1
            before = self.stream.prefilled
            fork = self.stream.fork(self.prompt, self.settings.note_tokens, NOTE_STOP,
                                    prefill=prompts.get("note_prefill").render(name=lead).rstrip(),
                                    recent=self.settings.note_context, sentence=True,
                                    text=c.text,  # the chunk and its note prompt in one pass
                                    avoid=self._avoid(), give_up=_doomed(lead))
            self.fed += self.stream.prefilled - before
            jobs.append(_Job("note", fork, chunk=c, lead=lead))
            self.next += 1
        elif self.book_wanted and not self.due and not self.in_flight and not jobs:
            self.book_wanted = False
            jobs += self._book_jobs()
        self.in_flight += len(jobs)
        return jobs

    def _book_jobs(self) -> list[_Job]:
        """The book summary's parts as forks, so that documents read together decode theirs together; none
        leaves it to `finish` (chapter summaries missing after a resume, or parts that need a hierarchical
        merge)."""
        if not self.notes or set(self.notes) - set(self.chapter_text):
            return []
        made = summarize.book_forks(self.engine, self.index, self.doc.title,
                                    self.settings.window + self.settings.max_pinned, self.doc.text) or []
        self.book_parts = [None] * len(made)
        return [_Job("book", fork, chapter=i, chunks=(0, self.total - 1), lead=part.start, part=part)
                for i, (fork, part) in enumerate(made)]

    def _avoid(self) -> Any:
        """The n-grams a note must not repeat: of the pinned summary and the last notes. One dict for all the
        forks made until a note comes back, so the notes decoded together avoid each other's words too."""
        key = (self.pinned, tuple(self.recent))
        if self.avoid[0] != key:
            self.avoid = (key, self.engine.ngrams([self.pinned, *self.recent]))
        return self.avoid[1]

    def _summary_job(self, kind: str, chapter: int) -> _Job | None:
        notes = self.notes.get(chapter, [])
        span = (notes[0][0], notes[-1][0])
        title = self.titles.get(chapter, f"Section {chapter + 1}")
        gists = [g for _, g in notes]
        if kind == "chapter" and len(notes) == 1:  # a one-passage chapter: its note is its summary
            self._store_chapter(chapter, span, gists[0])
            return None
        label = title if kind == "chapter" else f"{title} (so far)"
        made = summarize.chapter_fork(self.engine, self.doc.title, label, gists, CHAPTER_TOKENS,
                                      self.settings.window + self.settings.max_pinned)
        if made is None:  # the notes do not fit one prompt: merge hierarchically now (rare: very long chapters)
            if kind == "chapter":
                self._store_chapter(chapter, span, summarize.chapter_summary(
                    self.engine, self.doc.title, title, gists, self.settings.window + self.settings.max_pinned,
                    self.doc.text))
            return None
        return _Job(kind, made[0], chapter=chapter, chunks=span, lead=made[1])

    def complete(self, job: _Job, text: str) -> list[ReadEvent]:
        """Store a decoded fork; returns the events it makes."""
        self.in_flight -= 1
        if job.kind == "book":  # one part (job.chapter) of it; stored once all parts are in
            self.book_parts[job.chapter] = summarize.ground_part(self.engine, job.part, text, self.doc.text)
            if any(p is None for p in self.book_parts):
                return []
            book = summarize.join_parts(self.book_parts)
            self.index.add_summary("book", book, *job.chunks)
            return [self.event("book", self.total, "", book)]
        if job.kind == "note":
            c = job.chunk
            gist, model_tags = parse_note(join_lead(job.lead, text))
            if not gist:  # the model wrote nothing useful: keep an extractive gist rather than an empty note
                gist = " ".join(c.text.split()[:25])
            gist, method = content.gate(gist, c.text, self.book, most=NOTE_KEY_WORDS)
            self.index.add_note(c.ordinal, gist, chunk_tags(c.text, model_tags), method=method)
            self.notes.setdefault(c.chapter, []).append((c.ordinal, gist))
            self.recent = [*self.recent, gist][-RECENT_NOTES:]
            self.last_noted = c.ordinal
            last_of_chapter = c.ordinal + 1 == self.total or self.chunks[c.ordinal + 1].chapter != c.chapter
            if last_of_chapter:
                self.due.append(("chapter", c.chapter))
            elif len(self.notes[c.chapter]) % self.settings.summary_every == 0:
                self.due.append(("partial", c.chapter))
            return [self.event("chunk", c.ordinal + 1, _chapter_label(c), gist)]
        fallback = [g for _, g in self.notes.get(job.chapter, [])][-2:]
        title, said = self.titles.get(job.chapter, ""), join_lead(job.lead, text)
        if job.kind == "chapter":  # nothing grounded: the gate's key sentence (method "extractive"), not the notes
            stored = self._store_chapter(job.chapter, job.chunks, summarize.grounded(said, self.doc.text), fallback)
            return [self.event("chapter", self.last_noted + 1, title, stored)]
        summary = summarize.grounded(said, self.doc.text, fallback=fallback)
        if self.chapter_text.get(job.chapter) is None:  # a partial that arrives after its chapter ended is moot
            self.partial = (job.chapter, summary)
            self._repin()
        return [self.event("summary", self.last_noted + 1, title, summary)]

    def _chapter_source(self, chapter: int) -> str:
        """The chapter's text (its chunks joined when the chapter has no span)."""
        a, b = self.spans.get(chapter, (0, 0))
        return self.doc.text[a:b] if b > a else " ".join(c.text for c in self.chunks if c.chapter == chapter)

    def _store_chapter(self, chapter: int, span: tuple[int, int], text: str, fallback: list[str] | None = None) -> str:
        """Gate and store a chapter summary (the `fallback` notes when the chapter has no key sentence either);
        returns the text stored."""
        text, method = content.gate(text, self._chapter_source(chapter), self.book, strict=True)
        if not text:
            text, method = summarize.grounded("", self.doc.text, fallback=fallback), "model"
        self.index.add_summary("chapter", text, span[0], span[1], chapter=chapter, method=method)
        self.chapter_text[chapter] = text
        if self.partial and self.partial[0] == chapter:
            self.partial = None
        self._repin()
        return text

    def rolling_text(self) -> str:
        """The rolling summary: the latest chapter summaries and the current chapter so far, oldest first, then
        where we are. When they outgrow the pinned region the oldest go, down to `ROLL_REFILL` of it: the
        re-pins until the next such cut only add at the end, and the cache keeps the unchanged prefix's keys."""
        head = f"Read {self.last_noted + 1} of {self.total} passages."
        parts = [f"{self.titles.get(ch, '')}: {t}" for ch, t in sorted(self.chapter_text.items())]
        if self.partial:
            parts.append(f"{self.titles.get(self.partial[0], '')} (so far): {self.partial[1]}")
        budget = self.settings.max_pinned - self.engine.count(self._system("") + self._intro()) - 8
        start, limit = min(self.roll_start, len(parts)), budget
        while start < len(parts) and self.engine.count(" ".join([*parts[start:], head])) > limit:
            start, limit = start + 1, budget * ROLL_REFILL  # once over, cut down to the refill share
        self.roll_start = start
        return " ".join([*parts[start:], head])

    def _repin(self) -> None:
        if self.stream is None:
            return
        self.pinned = self.rolling_text()
        self.index.add_summary("rolling", self.pinned, 0, max(self.last_noted, 0))
        self.stream.repin(self._system(self.pinned), self._intro())


def drive(readers: list[Reader], engine: Backend, batch: int = 16, until_one_done: bool = False) -> Iterator[ReadEvent]:
    """Advance every reader in lockstep; once `POOL * batch` notes are waiting, or no reader can go on without a
    decode, decode them (and the summaries waiting) in rows of `batch`, finished rows refilled from the pool.
    With `until_one_done`, return as soon as a reader has nothing left (its slot can be refilled)."""
    jobs: list[tuple[Reader, _Job]] = []  # notes
    later: list[tuple[Reader, _Job]] = []  # summaries: longer outputs, decoded once a few are waiting
    while any(r.pending for r in readers) or jobs or later:
        for r in readers:
            if r.pending:
                for j in r.advance():
                    (jobs if j.kind == "note" else later).append((r, j))
        stuck = all(r.waiting for r in readers)  # only a decode lets anyone go on: decode all that waits together
        if len(jobs) >= POOL * batch or stuck:
            if len(later) >= SUMMARY_BATCH or stuck:
                # the long ones first: short notes fill the rows around them. Book summaries (the longest) wait
                # while another reader's last chapter summary is decoding, so all books share one decode.
                more_books = any(r.book_wanted and not r.reading for r in readers)
                held = [more_books and j.kind == "book" for _, j in later]
                jobs, later = [x for x, h in zip(later, held) if not h] + jobs, [x for x, h in zip(later, held) if h]
            texts = engine.decode([j.fork for _, j in jobs], width=batch)
            done, jobs = jobs, []
            for (r, j), text in sorted(zip(done, texts, strict=True), key=lambda d: d[0][1].kind != "note"):
                yield from r.complete(j, text)
            if until_one_done and not all(r.pending for r in readers) and not later:
                return


def finish(reader: Reader) -> Iterator[ReadEvent]:
    """Missing chapter summaries (after a resume), the book summary, the sentence and word embeddings, status
    done."""
    r = reader
    for kind, title, text in summarize.build_hierarchy(r.index, r.engine, r.doc, r.titles, r.settings):
        yield r.event(kind, r.total, title, text)
    yield r.event("windows", r.total, "embedding sentences")
    embed_windows(r.doc, r.index)
    embed_words(r.doc, r.index)
    r.index.set_status("done")
    yield r.event("done", r.total)
