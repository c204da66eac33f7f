"""`docstream bench …`: benchmark commands. Each parses options and calls a `docstream.bench.*` module,
which prints its figures (text, or `--json`). Heavy imports happen inside the commands.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import Dtype, Jobs, Json, Model, Window, handle_errors

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures (see README).")


@bench_app.command("stream")
@handle_errors
def bench_stream(file: Annotated[Path, typer.Argument(help="Text to stream (a Gutenberg novel).")],
                 tokens: Annotated[int, typer.Option(help="Tokens to score.")] = 4096,
                 window: Annotated[int, typer.Option(help="Window of the bounded caches.")] = 508,
                 sinks: Annotated[int, typer.Option(help="Sink tokens.")] = 4,
                 chunk: Annotated[int, typer.Option(help="Tokens scored per forward.")] = 64,
                 configs: Annotated[str, typer.Option(help="Subset of full,sink,window,prefill,loop.")]
                 = "full,sink,window,prefill,loop",
                 threads: Annotated[Optional[int], typer.Option(help="torch threads.")] = None,
                 dtype: Annotated[str, typer.Option(help="Weight format (as --dtype of read).")] = "auto",
                 model: Model = None, json_out: Json = False) -> None:
    """Perplexity (full / sink / window-only), tokens/s, peak RSS and KV bytes of streaming FILE."""
    from ..bench import stream

    res = stream.run(file, tokens=tokens, window=window, sinks=sinks, chunk=chunk, model=model, dtype=dtype,
                     configs=tuple(c.strip() for c in configs.split(",") if c.strip()), threads=threads)
    stream.print_report(res, as_json=json_out)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _numbers(value: str, option: str, kind: type = int) -> list:
    try:
        return [kind(v) for v in _csv(value)]
    except ValueError:
        raise typer.BadParameter(f"use comma-separated numbers, e.g. {option} 4000,16000", param_hint=option) from None


@bench_app.command("needle")
@handle_errors
def bench_needle(haystack: Annotated[Optional[Path], typer.Option(
                     help="Folder of .txt files (concatenated in sorted order) or one text file "
                          "[default: ../shared/corpus/niah_paul_graham_essays].")] = None,
                 lengths: Annotated[str, typer.Option(help="Document lengths in model tokens.")] = "4000,16000,32000",
                 depths: Annotated[str, typer.Option(help="Needle depths in % (0 = start, 100 = end).")]
                 = "0,25,50,75,100",
                 needle: Annotated[Optional[str], typer.Option(help="The sentence to hide.")] = None,
                 question: Annotated[Optional[str], typer.Option(help="The question about it.")] = None,
                 answer: Annotated[Optional[str], typer.Option(
                     help="Comma-separated key words a correct answer contains.", show_default="sandwich,Dolores Park")]
                 = None,
                 modes: Annotated[str, typer.Option(help="Subset of docstream,stream,truncate.")]
                 = "docstream,stream,truncate",
                 out: Annotated[Path, typer.Option(help="Output folder (texts/, needle.json, needle.png).")]
                 = Path("bench-out/needle"),
                 window: Window = 2048, jobs: Jobs = 1,
                 model: Model = None, json_out: Json = False) -> None:
    """Needle in a haystack: is one inserted sentence answered (and cited) at every length × depth, per mode?"""
    from ..bench import needle as nb

    res = nb.run(haystack, lengths=_numbers(lengths, "--lengths"), depths=_numbers(depths, "--depths", float),
                 needle=needle or nb.NEEDLE, question=question or nb.QUESTION,
                 answer=_csv(answer) if answer else nb.ANSWER, modes=_csv(modes), out=out, model=model,
                 window=window, jobs=jobs)
    nb.print_report(res, as_json=json_out)


@bench_app.command("summary")
@handle_errors
def bench_summary(data: Annotated[Optional[Path], typer.Option(
                      help="SQuALITY-style .jsonl.", show_default="../shared/corpus/qa/squality/dev.jsonl")] = None,
                  stories: Annotated[Optional[int], typer.Option(help="Only the first N stories.")] = None,
                  methods: Annotated[str, typer.Option(help="Subset of docstream,truncate,stream,oracle (the "
                                                            "best the story's own sentences score: the ceiling).")]
                  = "docstream,truncate,stream,oracle",
                  out: Annotated[Path, typer.Option(help="Output folder (texts/, summary.json).")]
                  = Path("bench-out/summary"),
                  words: Annotated[int, typer.Option(help="Target words of every method's summary.")] = 120,
                  fresh: Annotated[bool, typer.Option(help="docstream: make each book summary now from the stored "
                                                           "chapter lines and notes (reads reused).")] = False,
                  window: Window = 2048, jobs: Jobs = 1,
                  model: Model = None, json_out: Json = False) -> None:
    """Plot summaries of SQuALITY stories by docstream, truncate, stream and an extractive oracle: ROUGE,
    faithfulness, coverage."""
    from ..bench import summary as sb

    res = sb.run(data, stories=stories, methods=_csv(methods), model=model, window=window, words=words, out=out,
                 jobs=jobs, fresh=fresh)
    sb.print_report(res, as_json=json_out)


@bench_app.command("chapters")
@handle_errors
def bench_chapters(files: Annotated[Optional[list[Path]], typer.Argument(
                       help="Books to measure.", show_default="../shared/corpus/gutenberg/*.txt")] = None,
                   books: Annotated[str, typer.Option(help="Only books whose file name contains one of these "
                                                           "(comma-separated).")] = "",
                   window: Window = 2048, model: Model = None, dtype: Dtype = "auto",
                   json_out: Json = False) -> None:
    """Chapter lines per book (read if needed): lines found, vacuous lines, grounding in their chapter."""
    from ..bench import chapters

    chapters.print_report(chapters.run(files or None, books=tuple(_csv(books)), model=model, window=window,
                                       dtype=dtype), as_json=json_out)


@bench_app.command("read")
@handle_errors
def bench_read(file: Annotated[Path, typer.Argument(help="Text to read (a Gutenberg novel).")],
               window: Annotated[int, typer.Option(help="Recent tokens kept in the sink cache.")] = 2048,
               chunk_tokens: Annotated[int, typer.Option("--chunk-tokens", help="Tokens per chunk (0 = window/4).")]
               = 0,
               batch: Annotated[int, typer.Option(help="Notes decoded together (1 = one at a time).")] = 16,
               threads: Annotated[Optional[int], typer.Option(help="torch threads.")] = None,
               model: Model = None, json_out: Json = False) -> None:
    """Wall time of `read` vs a bare chunked prefill of the same tokens; decode tokens; peak RSS."""
    from ..bench import read

    read.print_report(read.run(file, model=model, window=window, chunk_tokens=chunk_tokens, batch=batch,
                               threads=threads), as_json=json_out)


@bench_app.command("batch")
@handle_errors
def bench_batch(files: Annotated[Optional[list[Path]], typer.Argument(
                    help="Texts to slice documents from.", show_default="../shared/corpus/gutenberg/*.txt")] = None,
                docs: Annotated[int, typer.Option(help="Documents to read.")] = 8,
                tokens: Annotated[int, typer.Option(help="Tokens per document.")] = 2048,
                width: Annotated[int, typer.Option(help="Documents read in lockstep (the batch).")] = 8,
                window: Annotated[int, typer.Option(help="Recent tokens kept in each sink cache.")] = 1024,
                model: Model = None, json_out: Json = False) -> None:
    """Documents/hour and decode tokens/s: one document at a time vs WIDTH in lockstep, same documents."""
    from ..bench import batch

    batch.print_report(batch.run(files or [], docs=docs, tokens=tokens, width=width, model=model, window=window),
                       as_json=json_out)


@bench_app.command("qa")
@handle_errors
def bench_qa(data: Annotated[Path, typer.Option(help="QA dev set (.jsonl).")] = Path("samples/qa/dev.jsonl"),
             corpus: Annotated[Path, typer.Option(help="Folder of the dev set's books.")]
             = Path("../shared/corpus/gutenberg"),
             modes: Annotated[str, typer.Option(help="Subset of docstream,rag,oracle,truncate,stream.")]
             = "docstream,rag,oracle,truncate",
             books: Annotated[str, typer.Option(help="Only books whose file name contains one of these (comma-"
                                                     "separated).")] = "",
             answer: Annotated[bool, typer.Option(help="Generate answers (--no-answer: retrieval figures only).")]
             = True,
             out: Annotated[Optional[Path], typer.Option(help="Also write every cell to this JSON file.")] = None,
             reader: Annotated[str, typer.Option(help="docstream's reader: forks (each candidate window read "
                                                      "alone) or window (one prompt).")] = "forks",
             window: Window = 2048, model: Model = None, dtype: Dtype = "auto", json_out: Json = False) -> None:
    """Detail questions over whole novels: retrieval and citation recall, accuracy and latency per mode."""
    from ..bench import qa

    res = qa.run(data, corpus, modes=tuple(_csv(modes)), books=tuple(_csv(books)), model=model, window=window,
                 generate=answer, out=out, reader=reader, dtype=dtype)
    qa.print_report(res, as_json=json_out)


@bench_app.command("engine")
@handle_errors
def bench_engine(file: Annotated[Path, typer.Argument(help="Text to measure on (a Gutenberg novel).")],
                 formats: Annotated[str, typer.Option(help="Weight formats, each in its own process: some of "
                                                           "fp32,fp16w,int8,bf16,fp16,int4.")]
                 = "fp32,fp16w,int8,bf16,int4",
                 tokens: Annotated[int, typer.Option(help="Tokens prefilled and scored.")] = 4096,
                 new_tokens: Annotated[int, typer.Option("--new-tokens", help="Tokens decoded per row.")] = 48,
                 reference: Annotated[Optional[str], typer.Option(
                     help="Add a reference row: llama.cpp (needs llama-cpp-python).")] = None,
                 threads: Annotated[Optional[int], typer.Option(help="torch threads.")] = None,
                 rounds: Annotated[int, typer.Option(help="Measure every format this many times, interleaved; "
                                                          "keep each speed's best round.")] = 1,
                 model: Model = None, json_out: Json = False) -> None:
    """Prefill and decode tok/s (batch 1 and 8), sink-cache perplexity and peak RSS of every weight format."""
    from ..bench import engine

    res = engine.run(str(file), formats=tuple(_csv(formats)), tokens=tokens, new_tokens=new_tokens, model=model,
                     threads=threads, reference=reference, rounds=rounds)
    typer.echo(json.dumps(res, indent=2) if json_out else engine.format_report(res))
