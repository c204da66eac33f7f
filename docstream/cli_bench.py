"""`docstream bench …`: benchmark commands. Each parses options and calls a `docstream.bench.*` module,
which prints its figures (text, or `--json`). Heavy imports happen inside the commands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import Json, Model, bench_app, handle_errors


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
                 dtype: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
                 model: Model = None, json_out: Json = False) -> None:
    """Perplexity (full / sink / window-only), tokens/s, peak RSS and KV bytes of streaming FILE."""
    from .bench import stream

    res = stream.run(file, tokens=tokens, window=window, sinks=sinks, chunk=chunk, model=model, dtype=dtype,
                     configs=tuple(c.strip() for c in configs.split(",") if c.strip()), threads=threads)
    stream.print_report(res, as_json=json_out)
