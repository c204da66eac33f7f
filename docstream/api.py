"""The Python API. The CLI is a thin layer over this module; `to_dict()` is exactly what `--json` prints.

    >>> import docstream
    >>> doc = docstream.open("samples/short.txt")          # doctest: +SKIP
    >>> doc.read(progress=True)                             # doctest: +SKIP
    >>> print(doc.ask("Who is the Hatter?").answer)         # doctest: +SKIP

Design choices:
- `open()` loads and validates the file (bad input fails here, before any index exists) but loads no model:
  `notes()`, `search()` and `summary()` of an already-read document never import torch.
- The index file is chosen by content hash + model + reading settings, so a changed file or other settings
  never answer from a stale index; `reread=True` starts over.
- Engines (loaded models) are cached per process and shared by every document (batch jobs load once).
- Reading holds a per-index writer lock; a second reader of the same document waits, then says so.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backend.base import Backend
from .errors import InputError, Interrupted, SettingsError
from .read.reader import ReadEvent
from .settings import ReadSettings

if TYPE_CHECKING:
    from .ask.answer import Answer
    from .index.rows import Note
    from .index.search import Hit

_ENGINES: dict[tuple[str, str, str], Backend] = {}


def get_engine(model: str | None = None, device: str = "auto", dtype: str = "auto",
               trust_remote_code: bool = False, backend: str = "local", base_url: str | None = None,
               api_key: str | None = None) -> Backend:
    """Load (once per process) and return the engine for `model`. `backend="openai"`: the model served by the
    OpenAI-compatible server at `base_url` (env DOCSTREAM_BASE_URL; key `api_key` or env OPENAI_API_KEY)."""
    from .backend.model import load, model_name

    if backend != "local":
        from .backend.openai import get_remote_engine

        return get_remote_engine(model, backend, base_url, api_key)

    key = (model_name(model), device, dtype)
    if key not in _ENGINES:
        from .backend.local import Engine

        _ENGINES[key] = Engine(load(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code))
    return _ENGINES[key]


def _context_length(model: str | None) -> int:
    """The model's context from its config.json, without importing torch."""
    from .backend.model import resolve

    path = Path(resolve(model))
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return 8192
    return int(cfg.get("max_position_embeddings") or 2048)


@dataclass
class ReadResult:
    document: str
    index: str
    chunks: int
    chapters: int
    tokens: int
    seconds: float
    tokens_per_s: float
    status: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Document:
    """A document on disk and its index. Create it with `docstream.open(path, ...)`."""

    def __init__(self, path: str | Path, *, model: str | None = None, window: int = 2048, sinks: int = 4,
                 chunk_tokens: int = 0, index: str | Path | None = None, device: str = "auto",
                 dtype: str = "auto", trust_remote_code: bool = False, engine: Backend | None = None,
                 backend: str = "local", base_url: str | None = None, api_key: str | None = None):
        from .backend.model import model_name, weight_format
        from .index.db import default_path, settings_hash
        from .text.load import load

        self.source = load(path)
        self.path = Path(path)
        self._backend = {} if backend == "local" else {"backend": backend, "base_url": base_url, "api_key": api_key}
        identity = None  # the index identity's model part: the name (local), backend + name + tokenizer (remote)
        if self._backend or getattr(engine, "backend", "local") != "local":
            from .backend import served as remote

            remote.check_backend(backend)
            if engine is None and remote.given_model(model) is None:
                engine = get_engine(None, **self._backend)  # the server names its model
            model, identity, ctx = remote.describe(remote.given_model(model) or "", engine)
        self.model = engine.name if engine is not None else model_name(model)
        self._engine = engine
        if identity is None:
            ctx = engine.context_length if engine is not None else _context_length(model)
            weights = getattr(getattr(engine, "lm", None), "weights", None) or weight_format(dtype, device)
        else:
            weights = "server"
        self._engine_args = (model, device, weights, trust_remote_code)
        self.settings = ReadSettings(window=window, sinks=sinks, chunk_tokens=chunk_tokens,
                                     weights=weights).resolved(ctx)
        self.settings_hash = settings_hash(identity or self.model, self.settings.to_dict())
        self.index_path = Path(index) if index else default_path(self.source.sha256, self.settings_hash)
        self.read_batch = 16  # notes decoded together while reading (not part of the index identity)

    # ------------------------------------------------------------------ plumbing
    @property
    def title(self) -> str:
        return self.source.title

    @property
    def engine(self) -> Backend:
        if self._engine is None:
            self._engine = get_engine(*self._engine_args, **self._backend)
        return self._engine

    def _index(self, create: bool = False) -> Any:
        from .index.db import Index

        if not create and not self.index_path.exists():
            raise InputError(f"{self.path} has not been read yet — run `docstream read {self.path}` first")
        ix = Index.open(self.index_path, create=create)
        info = ix.document()
        if info is not None and info.sha256 != self.source.sha256:  # only with --index: never answer stale
            ix.close()
            raise InputError(f"{self.path} has changed since index {self.index_path} was made — run `docstream read "
                             f"{self.path} --index {self.index_path} --reread`, or drop --index")
        if info is not None and info.size_chars is not None and info.size_chars != len(self.source.text):
            ix.close()  # same file, other extracted text (EPUB/HTML/PDF read by another lxml or pypdf version)
            raise InputError(f"{self.path}: its extracted text differs from the one index {self.index_path} was made "
                             f"from (another lxml/pypdf version?) — run `docstream read {self.path} --reread`")
        return ix

    def is_read(self) -> bool:
        if not self.index_path.exists():
            return False
        with self._index() as ix:
            info = ix.document()
            return bool(info and info.status == "done" and info.sha256 == self.source.sha256)

    # ------------------------------------------------------------------ reading
    @contextmanager
    def reading(self, reread: bool = False) -> Iterator[Any]:
        """Hold the index's writer lock with the chunks stored; yields a `Reader` (None when already done)."""
        from .index.db import Index
        from .read.reader import Reader

        engine = self.engine  # load the model first: a model that fails to load leaves no index behind
        if reread:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.index_path) + suffix).unlink(missing_ok=True)
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        with Index.open(self.index_path, create=True) as ix, ix.writer_lock(timeout=600):
            self._store_chunks(ix, engine)
            done = ix.document().status == "done"
            yield None if done else Reader(self.source, ix, engine, self.settings, ix.chunks(), ix.chapters())

    def _store_chunks(self, ix: Any, engine: Backend) -> None:
        """Chapters and chunks into the index (once; the caller holds the writer lock)."""
        from .text.chunk import chunk_document

        info = ix.document()
        if info is not None and info.sha256 != self.source.sha256:
            raise InputError(f"index {self.index_path} belongs to another file — pass another --index or --reread")
        if info is None or not ix.counts().get("chunks"):
            chapters, chunks = chunk_document(self.source, engine.tokenizer, self.settings.chunk_tokens)
            ix.add_chapters(chapters)
            ix.add_chunks(chunks)
            ix.set_document(sha256=self.source.sha256, path=str(self.path.resolve()), title=self.title,
                            size_chars=len(self.source.text), model=self.model,
                            settings=self.settings.to_dict(), settings_hash=self.settings_hash,
                            status="reading", chunks_total=len(chunks))

    def prepare(self) -> None:
        """Chunk the document, index its text and embed its words (seconds, no decoding), so it can be asked
        at once (`ask(..., wait=False)`); a later `read()` starts from these chunks."""
        from .index import dense
        from .index.db import Index

        if self.index_path.exists():
            with self._index() as ix:
                if ix.counts().get("chunks"):
                    return  # chunked already (perhaps being read right now by another process)
        engine = self.engine
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        with Index.open(self.index_path, create=True) as ix, ix.writer_lock(timeout=600):
            self._store_chunks(ix, engine)
            dense.embed_words(self.source, ix)  # 2–3 s a novel: a first answer searches related words too

    def embed(self) -> int:
        """Embed the sentence windows and words of a read document whose index lacks them (one read by an
        older version); returns how many windows the index holds (0 without the embedding model)."""
        from .index import dense

        with self._index() as ix:
            if (ix.window_count() and ix.word_count()) or dense.model_dir() is None:
                return ix.window_count()
            with ix.writer_lock(timeout=600):
                dense.embed_words(self.source, ix)
                return dense.embed_windows(self.source, ix)

    def read_events(self, reread: bool = False) -> Iterator[ReadEvent]:
        """Read the document (or resume an interrupted read), yielding progress events."""
        from .read.reader import drive, finish

        with self.reading(reread) as reader:
            if reader is None:
                with self._index() as ix:
                    n = ix.counts().get("chunks", 0)
                yield ReadEvent("windows", chunk=n, total=n, chapter="embedding sentences")
                self.embed()  # an index read by an older version: only what it lacks
                yield ReadEvent("done", chunk=n, total=n)
                return
            yield reader.event("start", reader.next)
            yield from drive([reader], reader.engine, self.read_batch)
            yield from finish(reader)

    def _result(self, last: ReadEvent | None, tokens: int) -> ReadResult:
        with self._index() as ix:
            counts = ix.counts()
            status = ix.document().status
        elapsed = last.elapsed if last else 0.0
        return ReadResult(document=str(self.path), index=str(self.index_path), chunks=counts.get("chunks", 0),
                          chapters=counts.get("chapters", 0), tokens=tokens, seconds=round(elapsed, 2),
                          tokens_per_s=round(tokens / elapsed, 1) if tokens and elapsed else 0.0, status=status)

    def read(self, progress: bool = False, reread: bool = False) -> ReadResult:
        """Read (or resume) and return what was done. `progress=True` draws a bar on stderr."""
        from .progress import consume

        last, tokens = consume(self.read_events(reread=reread), progress=progress, label=self.title)
        return self._result(last, tokens)

    def ensure_read(self, progress: bool = False) -> None:
        if not self.is_read():
            self.read(progress=progress)

    # ------------------------------------------------------------------ asking
    def ask(self, question: str, mode: str = "docstream", max_tokens: int = 64, stream: bool = False,
            wait: bool = True, reader: str = "forks") -> Answer:
        """Answer one question with citations (`mode`: docstream | rag | stream | truncate). `stream=True` returns at
        once with the evidence found: iterate the `Answer` for its text deltas (see `ask/answer.py`).
        `wait=False` on a document not read yet answers at once from its text index (`prepare()`), marked
        `first=True`, instead of reading the whole document first. `reader`: `forks` (each candidate sentence
        window read alone, the answer its evidence supports; `ask/reader.py`) or `window` (one prompt holding
        every focused window; streams token by token)."""
        from .ask.answer import MODES, READERS, answer, check_question

        if mode not in MODES:
            raise SettingsError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        if reader not in READERS:
            raise SettingsError(f"reader {reader!r}: use one of {', '.join(READERS)}")
        q = check_question(question, self.engine, self.settings.window)
        first = False
        if mode == "docstream":
            if wait:
                self.ensure_read()
                self.embed()  # once, for an index read by an older version
            elif not self.is_read():
                self.prepare()  # may wait for another process's read to store the chunks
                first = not self.is_read()
        with self._index() if mode == "docstream" else nullcontext() as ix:  # evidence is found in answer()
            ans = answer(self.source, ix, self.engine, q, self.settings, mode=mode, max_tokens=max_tokens,
                         reader=reader)
        ans.first = first
        return ans if stream else ans.done()

    # ------------------------------------------------------------------ stored results
    def notes(self, chapter: int | None = None) -> list[Note]:
        with self._index() as ix:
            return ix.notes(chapter=chapter)

    def search(self, query: str, limit: int = 10) -> list[Hit]:
        with self._index() as ix:
            return ix.search(query, limit=limit)

    def chapter_lines(self) -> list[tuple[Any, Any]]:
        """(chapter, summary) pairs: every chapter line as `summarize --level chapter` prints it."""
        self.ensure_read()
        with self._index() as ix:
            return self._chapter_lines(ix)

    def _chapter_lines(self, ix: Any) -> list[tuple[Any, Any]]:
        from .summarize import chapter_lines

        return chapter_lines(ix, self.source.text, self.source.body or self.source.text)

    def summary(self, level: str = "book", length: str = "medium", words: int | None = None,
                fresh: bool = False) -> Any:
        """`book`: the book summary (str); `chapter`: list of (title, summary); `chunk`: the notes. `fresh`: make
        the book summary now from the stored chapter lines and notes, not the one stored by the read (an index
        read by an older version keeps the book summary of its day)."""
        from . import summarize

        check_summary(level, length, words)
        self.ensure_read()
        with self._index() as ix:
            if level == "chunk":
                return ix.notes()
            if level == "chapter":
                return [(ch.title, s) for ch, s in self._chapter_lines(ix)]
            target = words or summarize.LENGTHS[length]
            book = ix.latest_summary("book")
            if book is not None and target == summarize.LENGTHS["medium"] and not fresh:
                return book.text
            return summarize.book_summary(self.engine, ix, self.title, target,
                                          self.settings.window + self.settings.max_pinned, self.source.text)


def check_summary(level: str = "book", length: str = "medium", words: int | None = None) -> None:
    """Refuse summary options that cannot work (before any reading starts)."""
    from .summarize import LENGTHS

    if level not in ("book", "chapter", "chunk"):
        raise SettingsError(f"level {level!r}: use book, chapter or chunk")
    if length not in LENGTHS:
        raise SettingsError(f"length {length!r}: use one of {', '.join(LENGTHS)}")
    if words is not None and words < 10:
        raise SettingsError(f"words={words}: use at least 10 words")


def open(path: str | Path, **kwargs: Any) -> Document:  # noqa: A001 - mirrors builtins.open on purpose
    """Open a document: `docstream.open("book.txt", model=None, window=2048, sinks=4, chunk_tokens=0)`."""
    return Document(path, **kwargs)


def read_together(docs: Iterable[Document], width: int = 8, batch: int = 16
                  ) -> Iterator[tuple[Document, ReadResult | None, BaseException | None]]:
    """Read many documents in lockstep on one engine: up to `width` at a time, each with its own sink cache,
    their notes decoded in shared batches; a finished document's slot is refilled from `docs` (lazily).
    Yields (document, result, error) as each finishes; a failing document does not stop the others.

        >>> for doc, res, err in read_together(docstream.open(p) for p in paths):  # doctest: +SKIP
        ...     print(doc.path, res.chunks if res else err)
    """
    from .read.reader import drive, finish

    pending = iter(docs)
    slots: list[tuple[Document, Any, ExitStack]] = []  # (doc, reader, its open index + lock)
    while True:
        while len(slots) < width:
            doc = next(pending, None)
            if doc is None:
                break
            stack = ExitStack()
            try:
                reader = stack.enter_context(doc.reading())
            except (KeyboardInterrupt, Interrupted):
                stack.close()
                raise
            except Exception as e:  # noqa: BLE001 - confined to this document
                stack.close()
                yield doc, None, e
                continue
            if reader is None:
                stack.close()
                yield doc, doc._result(None, 0), None
                continue
            slots.append((doc, reader, stack))
        if not slots:
            return
        engine = slots[0][1].engine
        readers = [r for _, r, _ in slots]
        for _ in drive(readers, engine, batch, until_one_done=True):
            pass
        for doc, reader, stack in [s for s in slots if not s[1].pending]:
            slots.remove((doc, reader, stack))
            try:
                last = None
                for last in finish(reader):
                    pass
                res = doc._result(last, reader.fed)
            except (KeyboardInterrupt, Interrupted):
                raise
            except Exception as e:  # noqa: BLE001
                res, err = None, e
            else:
                err = None
            finally:
                stack.close()
            yield doc, res, err
