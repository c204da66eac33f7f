"""Batch jobs: many documents, the same questions for each, one result (one JSON line) per document.

    >>> import docstream
    >>> for r in docstream.batch(["samples/short.txt", "samples/time-machine.txt"],
    ...                          questions=["Who is the main character?"], summarize=True,
    ...                          jsonl="out.jsonl"):                                  # doctest: +SKIP
    ...     print(r.document, r.status, r.answers[0].answer if r.ok else r.error)

`docstream batch FILES… --questions q.txt --jsonl out.jsonl` is the same call; each line it prints is exactly
`Result.to_dict()`.

Design choices:
- `batch()` validates everything that is the same for every document (executor, model, window/sinks/chunk
  sizes, questions) *eagerly* and raises a `DocstreamError` before any work; it then returns a lazy iterator.
  Whatever goes wrong with one document (missing file, binary file, any error while reading or answering)
  becomes an error `Result` for that document and the batch goes on. Ctrl-C (`KeyboardInterrupt`,
  `Interrupted`) stops the batch: what was read is saved in the indexes, finished results are in the JSONL.
- Results stream out in the order documents finish (input order for the local executor, completion order
  for Ray). With `jsonl=`, each result is appended as one line, flushed and fsync'ed before it is yielded, so
  a kill loses at most the documents in progress.
- Resume: a document is skipped (not yielded, its old line kept) when the JSONL already holds an `ok` line
  for the same path with the same `key` — a hash of the file's content, the model, the reading settings,
  the questions and `summarize`. Anything else runs again; error lines are retried (a retried document gets a
  new line, so readers of the JSONL should keep the *last* line per document). A document whose index is
  already finished is not read again: its `read.status` is `"reused"` and no model is loaded for it unless
  questions need one.
- One per-document pipeline (`_run_jobs`: open → `_read_all` → answer/summarize) serves both executors: the
  local executor runs it over all documents in this process; the Ray executor runs it for one document per
  Ray task. So results are the same whichever executor produced them.
- `_read_all` is the seam for lockstep batched reading (several documents read as one batch on one model): it
  takes the opened jobs lazily and yields each as its read finishes. Today it reads one after another.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..api import Document, ReadResult
from ..ask.answer import Answer
from ..errors import Interrupted, SettingsError, error_line
from .ray import run_ray

EXECUTORS = ("local", "ray")
RAY_MISSING = "the ray executor needs ray — pip install 'docstream[ray]'"

__all__ = ["Result", "batch", "EXECUTORS"]


@dataclass
class Result:
    """What a batch did with one document. `to_dict()` is the JSON line `docstream batch` prints.

    - `document`: the path as given; `status`: `"ok"` or `"error"`; `error`: one line saying what went wrong.
    - `index`: the document's index file; `read`: the `ReadResult` (`read.status` is `"reused"` when the
      index was already finished and nothing was read).
    - `answers`: one `Answer` per question, in order; `summary`: the book summary when asked for, else None.
    - `seconds`: wall time for this document; `sha256`: the file's content hash; `key`: identifies the work
      (content + model + reading settings + questions + summarize) — what resuming compares.
    - `warnings`: notes from loading the file (e.g. an encoding fallback).
    """

    document: str
    status: Literal["ok", "error"]
    error: str | None = None
    index: str | None = None
    read: ReadResult | None = None
    answers: list[Answer] = field(default_factory=list)
    summary: str | None = None
    seconds: float = 0.0
    sha256: str | None = None
    key: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"document": self.document, "status": self.status, "error": self.error, "index": self.index,
                "read": self.read.to_dict() if self.read is not None else None,
                "answers": [a.to_dict() for a in self.answers], "summary": self.summary,
                "seconds": self.seconds, "sha256": self.sha256, "key": self.key, "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        """The inverse of `to_dict()` (e.g. for a line of a batch's JSONL)."""
        answers = [Answer.from_dict(a) for a in d.get("answers") or []]
        read = ReadResult(**d["read"]) if d.get("read") else None
        return cls(document=d["document"], status=d["status"], error=d.get("error"), index=d.get("index"),
                   read=read, answers=answers, summary=d.get("summary"), seconds=d.get("seconds", 0.0),
                   sha256=d.get("sha256"), key=d.get("key"), warnings=list(d.get("warnings") or []))


# ---------------------------------------------------------------------------------------------- the job spec

@dataclass(frozen=True)
class _Spec:
    """Everything a worker needs to process one document (picklable: it travels to Ray tasks)."""

    questions: tuple[str, ...]
    summarize: bool
    model: str
    window: int
    sinks: int
    chunk_tokens: int
    options: tuple[tuple[str, Any], ...]  # further `docstream.open` keyword arguments (device, dtype, …)
    cwd: str  # relative paths are relative to the caller's working directory, wherever the task runs

    def open(self, path: str) -> Document:
        return Document(Path(self.cwd) / path, model=self.model, window=self.window, sinks=self.sinks,
                        chunk_tokens=self.chunk_tokens, **dict(self.options))

    def key(self, doc: Document) -> str:
        blob = json.dumps({"sha256": doc.source.sha256, "settings": doc.settings_hash,
                           "questions": list(self.questions), "summarize": self.summarize},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


@dataclass
class _Job:
    """One document on its way through the pipeline."""

    path: str
    t0: float
    doc: Document | None = None
    error: str | None = None
    read: ReadResult | None = None


# ---------------------------------------------------------------------------------------------- the pipeline

def _open(path: str, spec: _Spec) -> _Job:
    job = _Job(path=path, t0=time.perf_counter())
    try:
        job.doc = spec.open(path)
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - one bad document must not stop the batch
        job.error = error_line(e)
    return job


def _read_one(doc: Document, progress: bool) -> ReadResult:
    """Read one document, or report its finished index without loading a model."""
    if doc.is_read():
        with doc._index() as ix:
            counts = ix.counts()
        return ReadResult(document=str(doc.path), index=str(doc.index_path), chunks=counts.get("chunks", 0),
                          chapters=counts.get("chapters", 0), tokens=0, seconds=0.0, tokens_per_s=0.0,
                          status="reused")
    return doc.read(progress=progress)


def _read_all(jobs: Iterable[_Job], progress: bool = False, width: int = 8) -> Iterator[_Job]:
    """Read every job's document; yield each job as soon as its read is finished (`job.read` set) or failed
    (`job.error` set). Jobs that already failed to open, or whose index is finished, pass straight through.

    Documents are read in lockstep, `width` at a time, on one model (`api.read_together`: one sink cache per
    document, notes of all of them decoded in shared batches); a finished document's slot is refilled lazily.
    """
    from ..api import read_together

    waiting: dict[int, _Job] = {}

    def docs() -> Iterator[Document]:
        for job in jobs:
            if job.error is None and job.doc is not None and not job.doc.is_read():
                waiting[id(job.doc)] = job
                yield job.doc
            else:
                if job.error is None and job.doc is not None:
                    job.read = replace(_read_one(job.doc, progress), document=job.path)
                ready.append(job)

    ready: list[_Job] = []
    for doc, res, err in read_together(docs(), width=width):
        while ready:
            yield ready.pop(0)
        job = waiting.pop(id(doc))
        if err is not None:
            if isinstance(err, (Interrupted, KeyboardInterrupt)):
                raise err
            job.error = error_line(err)
        else:
            job.read = replace(res, document=job.path)
        yield job
    while ready:
        yield ready.pop(0)


def _finish(job: _Job, spec: _Spec) -> Result:
    """Answer the questions and summarize a read document; build its `Result`."""
    doc = job.doc
    res = Result(document=job.path, status="error", error=job.error, read=job.read)
    if doc is not None:
        res.index, res.sha256, res.key = str(doc.index_path), doc.source.sha256, spec.key(doc)
        res.warnings = list(doc.source.warnings)
    if job.error is None and doc is not None:
        try:
            res.answers = [doc.ask(q) for q in spec.questions]
            res.summary = doc.summary(level="book") if spec.summarize else None
            res.status = "ok"
        except (Interrupted, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001
            res.error = error_line(e)
    res.seconds = round(time.perf_counter() - job.t0, 2)
    return res


def _run_jobs(paths: Iterable[str], spec: _Spec, progress: bool = False) -> Iterator[Result]:
    """The per-document pipeline both executors run: open (lazily) → `_read_all` → answer/summarize."""
    for job in _read_all((_open(p, spec) for p in paths), progress):
        yield _finish(job, spec)


# ---------------------------------------------------------------------------------------------- executors

def _run_local(paths: list[str], spec: _Spec, progress: bool) -> Iterator[Result]:
    return _run_jobs(paths, spec, progress)


# ---------------------------------------------------------------------------------------------- resuming

def _load_done(jsonl: Path, cwd: str) -> dict[str, set[str]]:
    """{resolved path: {keys of its ok lines}} from an existing JSONL (unparsable lines are ignored)."""
    done: dict[str, set[str]] = {}
    if not jsonl.exists():
        return done
    with jsonl.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict) and d.get("status") == "ok" and d.get("key") and d.get("document"):
                done.setdefault(_resolved(d["document"], cwd), set()).add(d["key"])
    return done


def _resolved(path: str, cwd: str) -> str:
    return str((Path(cwd) / path).resolve())


def _already_done(path: str, spec: _Spec, done: dict[str, set[str]]) -> bool:
    keys = done.get(_resolved(path, spec.cwd))
    if not keys:
        return False
    try:
        return spec.key(spec.open(path)) in keys
    except Exception:  # noqa: BLE001 - it will fail again, properly, when processed
        return False


class _Sink:
    """Appends results to the JSONL: one line each, flushed and fsync'ed before the result is yielded."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = path.open("ab")
        if self.f.tell() > 0:  # a kill mid-line leaves a partial line: never glue the next one onto it
            with path.open("rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self.f.write(b"\n")

    def write(self, result: Result) -> None:
        self.f.write((json.dumps(result.to_dict(), ensure_ascii=False) + "\n").encode("utf-8"))
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


# ---------------------------------------------------------------------------------------------- the API

def _say(msg: str) -> None:
    print(f"docstream batch: {msg}", file=sys.stderr, flush=True)


def _validate(paths: Any, questions: Iterable[str], model: str | None, window: int, sinks: int,
              chunk_tokens: int, executor: str, ray_address: str | None, options: dict[str, Any]) -> tuple[
                  list[str], tuple[str, ...], str]:
    from ..api import _context_length
    from ..ask.answer import check_question
    from ..backend.model import model_name, resolve
    from ..settings import ReadSettings

    if executor not in EXECUTORS:
        raise SettingsError(f"executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise SettingsError("a Ray address needs the ray executor — add --executor ray")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise SettingsError(RAY_MISSING) from None
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    seen: dict[str, str] = {}
    for p in paths:  # the same file twice is processed once
        seen.setdefault(_resolved(str(p), os.getcwd()), str(p))
    if not seen:
        raise SettingsError("no documents given — pass one or more .txt or .md files")
    if isinstance(questions, str):
        questions = [questions]
    qs = tuple(check_question(q, None, window) for q in questions)
    unknown = set(options) - set(inspect.signature(Document.__init__).parameters) - {"self"}
    if unknown:
        raise SettingsError(f"unknown option(s) for docstream.open: {', '.join(sorted(unknown))}")
    if options.get("backend", "local") == "local":
        resolve(model)  # ModelNotFound now, not once per document
        ReadSettings(window=window, sinks=sinks, chunk_tokens=chunk_tokens).resolved(_context_length(model))
    return list(seen.values()), qs, model_name(model)


def batch(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], questions: Iterable[str] = (),
          summarize: bool = False, model: str | None = None, window: int = 2048, sinks: int = 4,
          chunk_tokens: int = 0, executor: str = "local", ray_address: str | None = None,
          jsonl: str | os.PathLike[str] | None = None, progress: bool = False, **options: Any) -> Iterator[Result]:
    """Read many documents and answer the same questions for each; yield one `Result` per document as it
    finishes.

    - `questions`: asked of every document (empty: only read); `summarize=True` adds the book summary.
    - `model`, `window`, `sinks`, `chunk_tokens` and any further keyword (`device`, `dtype`, …) are as in
      `docstream.open()`; one model is loaded per process and shared by all documents.
    - `executor="local"` runs in this process; `"ray"` runs one Ray task per document on the cluster at
      `ray_address` (e.g. `"auto"`), or on a local Ray runtime started (and stopped) here when none is given
      and Ray is not initialised yet. Needs `pip install 'docstream[ray]'`; the files must be readable at the
      same paths on every node.
    - `jsonl`: append each result as one JSON line (flushed + fsync'ed); documents already `ok` there with
      the same content, model, settings, questions and `summarize` are skipped, so rerunning resumes.
    - `progress=True`: reading bars and one line per document on stderr.

    Bad settings raise a `DocstreamError` right away; a failing document yields `Result(status="error")`.

        >>> import docstream
        >>> results = list(docstream.batch(["samples/short.txt", "missing.txt"],
        ...                                questions=["Who is Alice?"]))              # doctest: +SKIP
        >>> [r.status for r in results]                                              # doctest: +SKIP
        ['ok', 'error']
        >>> results[0].answers[0].citations[0].quote                                 # doctest: +SKIP
    """
    todo, qs, name = _validate(paths, questions, model, window, sinks, chunk_tokens, executor, ray_address,
                               options)
    spec = _Spec(questions=qs, summarize=summarize, model=name, window=window, sinks=sinks,
                 chunk_tokens=chunk_tokens, options=tuple(sorted(options.items())), cwd=os.getcwd())
    return _batch_iter(todo, spec, executor, ray_address, Path(jsonl) if jsonl is not None else None, progress)


def _batch_iter(paths: list[str], spec: _Spec, executor: str, ray_address: str | None, jsonl: Path | None,
                progress: bool) -> Iterator[Result]:
    todo = paths
    if jsonl is not None:
        done = _load_done(jsonl, spec.cwd)
        todo = [p for p in paths if not _already_done(p, spec, done)]
        if progress and len(todo) < len(paths):
            _say(f"skipping {len(paths) - len(todo)} document(s) already done in {jsonl}")
    if not todo:
        return
    sink = _Sink(jsonl) if jsonl is not None else None
    if executor == "ray":
        runner = run_ray(todo, spec, _run_jobs, ray_address,
                         failed=lambda p, e: Result(document=p, status="error", error=error_line(e)))
    else:
        runner = _run_local(todo, spec, progress)
    try:
        for i, r in enumerate(runner, 1):
            if sink is not None:
                sink.write(r)
            if progress:
                if r.ok:
                    how = "index reused" if r.read and r.read.status == "reused" else \
                        f"{r.read.chunks if r.read else 0} chunks read"
                    _say(f"[{i}/{len(todo)}] {r.document}: ok — {how}, {len(r.answers)} answer(s), {r.seconds:.1f} s")
                else:
                    _say(f"[{i}/{len(todo)}] {r.document}: error — {r.error}")
            yield r
    finally:
        close = getattr(runner, "close", None)
        if close is not None:
            close()
        if sink is not None:
            sink.close()
