"""The `docstream` command: parses, renders and maps errors; all logic lives in the API (`api.py`).

Data goes to stdout, progress and diagnostics to stderr; `--json` prints exactly the API's `to_dict()`.
Every `DocstreamError` becomes one `Error: …` line and its exit code (2; 130 for an interrupted read).
Commands that need no model (`notes`, `search`, `--help`) never import torch.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import DocstreamError
from ..render import citation_line
from .bench import bench_app
from .options import (
    ApiKey,
    Backend,
    BaseUrl,
    ChunkTokens,
    Device,
    Dtype,
    File,
    IndexOpt,
    Json,
    Model,
    Quiet,
    Sinks,
    Window,
    dump,
    err,
    handle_errors,
)

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Read documents far longer than a model's window; summarize them and answer questions "
                       "about small details, with citations.")
app.add_typer(bench_app, name="bench")

def open_doc(file: Path, model: str | None = None, window: int = 2048, sinks: int = 4, chunk_tokens: int = 0,
             index: Path | None = None, device: str = "auto", dtype: str = "auto", backend: str = "local",
             base_url: str | None = None, api_key: str | None = None) -> Any:
    from ..api import open as open_document

    doc = open_document(file, model=model, window=window, sinks=sinks, chunk_tokens=chunk_tokens, index=index,
                        device=device, dtype=dtype, backend=backend, base_url=base_url, api_key=api_key)
    for w in doc.source.warnings:
        err(f"Warning: {w}")
    return doc


@app.command()
@handle_errors
def read(file: File, model: Model = None, window: Window = 2048, sinks: Sinks = 4, chunk_tokens: ChunkTokens = 0,
         index: IndexOpt = None, reread: Annotated[bool, typer.Option(help="Ignore an existing index.")] = False,
         device: Device = "auto", dtype: Dtype = "auto", json_out: Json = False, quiet: Quiet = False,
         backend: Backend = "local", base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """Read FILE once, in order, writing notes, tags and summaries into its index."""
    doc = open_doc(file, model, window, sinks, chunk_tokens, index, device, dtype, backend, base_url, api_key)
    res = doc.read(progress=not (quiet or json_out), reread=reread)
    if json_out:
        dump(res.to_dict())
    else:
        typer.echo(f"{res.document}: {res.chunks} chunks, {res.chapters} chapters, {res.tokens} tokens in "
                   f"{res.seconds:.1f} s ({res.tokens_per_s:.0f} tok/s) → {res.index}")


def _print_answer(doc: Any, question: str, mode: str, json_out: bool, max_tokens: int,
                  wait: bool = True) -> dict[str, Any]:
    if not json_out:
        ans = doc.ask(question, mode=mode, max_tokens=max_tokens, stream=True, wait=wait)
        if ans.first:
            sys.stdout.write("(first answer, from the text alone) ")
        for delta in ans:
            sys.stdout.write(delta)
            sys.stdout.flush()
        typer.echo("")
        for i, c in enumerate(ans.citations, 1):
            typer.echo(citation_line(i, c, ans.mark if i == 1 else None))
        return ans.to_dict()
    return doc.ask(question, mode=mode, max_tokens=max_tokens, wait=wait).to_dict()


@app.command()
@handle_errors
def ask(file: File, questions: Annotated[Optional[list[str]], typer.Argument(help="One or more questions.")] = None,
        questions_file: Annotated[Optional[Path], typer.Option("--questions", help="One question per line.")] = None,
        mode: Annotated[str, typer.Option(help="docstream | rag (plain BM25, no read) | stream (bare StreamingLLM) | "
                                               "truncate (first window).")]
        = "docstream",
        interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Ask question after question.")] = False,
        wait: Annotated[bool, typer.Option("--wait", help="On a file not read yet, read it before answering "
                                                         "(default: a first answer from its text at once, then "
                                                         "read, then the full answer).")] = False,
        max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 64,
        model: Model = None, window: Window = 2048, sinks: Sinks = 4, chunk_tokens: ChunkTokens = 0,
        index: IndexOpt = None, device: Device = "auto", dtype: Dtype = "auto", json_out: Json = False,
        quiet: Quiet = False, backend: Backend = "local", base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """Answer QUESTIONS about FILE from its index (reading it first if needed), with citations."""
    qs = list(questions or [])
    if questions_file is not None:
        try:
            qs += [q.strip() for q in questions_file.read_text(encoding="utf-8").splitlines() if q.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise typer.BadParameter(f"cannot read {questions_file}: {getattr(e, 'strerror', None) or e} — pass "
                                     "a UTF-8 text file with one question per line", param_hint="--questions")
    doc = open_doc(file, model, window, sinks, chunk_tokens, index, device, dtype, backend, base_url, api_key)
    if not qs and not interactive and sys.stdin.isatty():
        interactive = True
    firsts: list[dict[str, Any]] = []
    if mode == "docstream":
        from ..ask.answer import check_question

        for q in qs:
            check_question(q, None, doc.settings.window)
        if qs and not (wait or interactive) and not doc.is_read():
            firsts = [_print_answer(doc, q, mode, json_out, max_tokens, wait=False) for q in qs]
            err("Reading the whole file for a full answer (Ctrl-C stops; the same command or `docstream read` "
                "resumes where it stopped).")
        doc.ensure_read(progress=not (quiet or json_out))
    if interactive or not qs:
        return _interactive(doc, mode, json_out, max_tokens)
    results = [_print_answer(doc, q, mode, json_out, max_tokens) for q in qs]
    for res, first in zip(results, firsts):
        res["first_answer"] = first
    if json_out:
        dump(results[0] if len(results) == 1 else results)


def _interactive(doc: Any, mode: str, json_out: bool, max_tokens: int) -> None:
    err(f"Ask about {doc.title} (empty line or Ctrl-D to quit).")
    while True:
        try:
            q = input("? " if sys.stdin.isatty() else "")
        except EOFError:
            return
        if not q.strip():
            return
        try:
            out = _print_answer(doc, q, mode, json_out, max_tokens)
            if json_out:
                typer.echo(json.dumps(out, ensure_ascii=False))
        except DocstreamError as e:
            err(f"Error: {e}")


@app.command()
@handle_errors
def summarize(file: File,
              level: Annotated[str, typer.Option(help="book | chapter (one line per chapter) | chunk (the notes).")]
              = "book",
              fmt: Annotated[str, typer.Option("--format", help="text | md | json")] = "text",
              length: Annotated[str, typer.Option(help="short | medium | long (book level).")] = "medium",
              words: Annotated[Optional[int], typer.Option(help="Target words for the book summary.")] = None,
              model: Model = None, window: Window = 2048, sinks: Sinks = 4, chunk_tokens: ChunkTokens = 0,
              index: IndexOpt = None, device: Device = "auto", dtype: Dtype = "auto", quiet: Quiet = False,
              backend: Backend = "local", base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """Print the summary of FILE: the whole book, one sentence per chapter, or the notes."""
    from ..api import check_summary
    from ..render import render_summary

    if fmt not in ("text", "md", "json"):
        raise typer.BadParameter("use text, md or json", param_hint="--format")
    check_summary(level, length, words)
    doc = open_doc(file, model, window, sinks, chunk_tokens, index, device, dtype, backend, base_url, api_key)
    doc.ensure_read(progress=not (quiet or fmt == "json"))
    typer.echo(render_summary(doc, level, fmt, length, words))


@app.command()
@handle_errors
def notes(file: File, chapter: Annotated[Optional[int], typer.Option(help="Only this chapter (1-based).")] = None,
          model: Model = None, window: Window = 2048, sinks: Sinks = 4, chunk_tokens: ChunkTokens = 0,
          index: IndexOpt = None, json_out: Json = False, backend: Backend = "local", base_url: BaseUrl = None,
          api_key: ApiKey = None) -> None:
    """Print the notes written while reading FILE, in order, with chapters and line ranges."""
    doc = open_doc(file, model, window, sinks, chunk_tokens, index, backend=backend, base_url=base_url,
                   api_key=api_key)
    rows = doc.notes(chapter=None if chapter is None else chapter - 1)
    if json_out:
        return dump([r.__dict__ for r in rows])
    for n in rows:
        typer.echo(f"#{n.chunk + 1} [{n.chapter_title}] lines {n.line_start}-{n.line_end}: {n.gist}")
        if n.tags:
            typer.echo(f"    tags: {', '.join(n.tags)}")


@app.command()
@handle_errors
def search(file: File, query: Annotated[str, typer.Argument(help="Words to look for.")],
           limit: Annotated[int, typer.Option(help="Most hits.")] = 10,
           model: Model = None, window: Window = 2048, sinks: Sinks = 4, chunk_tokens: ChunkTokens = 0,
           index: IndexOpt = None, json_out: Json = False, backend: Backend = "local", base_url: BaseUrl = None,
           api_key: ApiKey = None) -> None:
    """Full-text search over FILE's notes, tags and text, with spans."""
    doc = open_doc(file, model, window, sinks, chunk_tokens, index, backend=backend, base_url=base_url,
                   api_key=api_key)
    hits = doc.search(query, limit=limit)
    if json_out:
        return dump([h.__dict__ for h in hits])
    if not hits:
        err("No matches.")
    for h in hits:
        typer.echo(f"#{h.chunk + 1} [{h.chapter_title}] lines {h.line_start}-{h.line_end} "
                   f"(chars {h.char_start}-{h.char_end}) score {h.score:.2f}")
        typer.echo(f"    {h.snippet}")


@app.command("batch")
@handle_errors
def batch_cmd(files: Annotated[list[Path], typer.Argument(help="The files to read (.txt, .md, .epub, .html, .pdf).", show_default=False, metavar="FILES...")],
              questions_file: Annotated[Optional[Path], typer.Option(
                  "--questions", help="Questions to ask of every file, one per line.")] = None,
              summarize: Annotated[bool, typer.Option("--summarize", help="Add each file's book summary.")] = False,
              jsonl: Annotated[Optional[Path], typer.Option(
                  "--jsonl", help="Also append the results to this file; a rerun skips the files done there.")]
              = None,
              executor: Annotated[str, typer.Option(help="local (this process) or ray (one Ray task per file).")]
              = "local",
              ray_address: Annotated[Optional[str], typer.Option(
                  "--ray-address", help="Ray cluster to use (e.g. auto); default: a local Ray runtime.")] = None,
              backend: Backend = "local", base_url: BaseUrl = None, api_key: ApiKey = None,
              model: Model = None, window: Window = 2048, sinks: Sinks = 4, chunk_tokens: ChunkTokens = 0,
              device: Device = "auto", dtype: Dtype = "auto", quiet: Quiet = False) -> None:
    """Read many FILES and answer the same questions for each: one JSON line per file on stdout, as each finishes.

    Exit code 0 if every file is ok, 1 if some failed (their lines say why), 2 for bad arguments.
    """
    from ..jobs.batch import EXECUTORS, batch

    if executor not in EXECUTORS:
        raise typer.BadParameter(f"use one of {', '.join(EXECUTORS)}", param_hint="--executor")
    qs: list[str] = []
    if questions_file is not None:
        try:
            qs = [q.strip() for q in questions_file.read_text(encoding="utf-8").splitlines() if q.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise typer.BadParameter(f"cannot read {questions_file}: {getattr(e, 'strerror', None) or e}",
                                     param_hint="--questions")
    options: dict[str, Any] = {"device": device, "dtype": dtype}
    if backend != "local":  # the OpenAI-compatible backend's options (only passed when asked for)
        options.update(backend=backend, base_url=base_url, api_key=api_key)
    n = failed = 0
    for r in batch(files, questions=qs, summarize=summarize, model=model, window=window, sinks=sinks,
                   chunk_tokens=chunk_tokens, executor=executor, ray_address=ray_address, jsonl=jsonl,
                   progress=not quiet, **options):
        sys.stdout.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        n += 1
        failed += not r.ok
    if failed:
        err(f"{failed} of {n} documents failed — their lines say why; run the same command again to retry them.")
        raise typer.Exit(1)
    if n == 0 and not quiet:
        err(f"Nothing to do: every file is already done in {jsonl}.")


@app.command()
@handle_errors
def doctor(index: Annotated[Optional[Path], typer.Option("--index", help="Also check this index file.")] = None,
           json_out: Json = False) -> None:
    """Print versions, the model, cache dir and free disk; with --index, check that index file."""
    from ..doctor import render, report

    rep = report(index)
    typer.echo(json.dumps(rep, ensure_ascii=False, indent=2) if json_out else render(rep))


def _quiet_libraries() -> None:
    """stderr is docstream's own: other packages' warnings (a deprecation in a new transformers, say) are not
    shown to users unless they ask with PYTHONWARNINGS or -W. Developers still see them: the suite runs the
    engine with warnings as errors (tests/test_cache.py) and `make test-latest` runs it on the newest releases."""
    if not sys.warnoptions:
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=r"docstream(\.|$)")


def main() -> None:
    _quiet_libraries()
    app()


if __name__ == "__main__":
    main()
