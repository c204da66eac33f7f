"""Options shared by the `docstream` commands, declared once, and the one place errors become `Error: …` lines."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import DocstreamError

File = Annotated[Path, typer.Argument(help="A book or document: .txt, .md, .epub, .html or .pdf.", show_default=False)]
Model = Annotated[Optional[str], typer.Option("--model", "-m", envvar="DOCSTREAM_MODEL", show_default="smollm2-135m",
                                              help="Model alias, local HF directory or hub id.")]
Window = Annotated[int, typer.Option(help="Recent tokens kept in the sink cache.")]
Jobs = Annotated[int, typer.Option(help="Benchmark cells run in parallel worker processes.")]
Sinks = Annotated[int, typer.Option(help="Attention-sink tokens kept at the start.")]
ChunkTokens = Annotated[int, typer.Option("--chunk-tokens", help="Tokens per chunk (0 = window/4).")]
IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="Index file (default: in the cache dir).")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Dtype = Annotated[str, typer.Option(help="Weight format: auto (bf16 on cuda, int4 on a CPU with native bf16, "
                                         "else fp16w), fp32, fp16w (fp16 weights, fp32 compute), int8, bf16, fp16 "
                                         "or int4 (int4 weights for decoding, bf16 compute; CPU).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Backend = Annotated[str, typer.Option(help="local (this machine), or openai for an OpenAI-compatible server "
                                           "(vLLM, llama.cpp, Ollama, transformers serve).")]
BaseUrl = Annotated[Optional[str], typer.Option("--base-url", envvar="DOCSTREAM_BASE_URL",
                                                help="The server's URL (--backend openai); by default "
                                                     "http://127.0.0.1:8000/v1.")]
ApiKey = Annotated[Optional[str], typer.Option("--api-key", envvar="OPENAI_API_KEY", show_default=False,
                                               help="The server's API key (--backend openai).")]


def err(msg: str) -> None:
    typer.echo(msg, err=True)


def _one_line(e: BaseException) -> str:
    """An error's text on one line (a path may hold a newline)."""
    return str(e).replace("\r", "\\r").replace("\n", "\\n")


def handle_errors(fn: Any) -> Any:
    """Map DocstreamError to `Error: …` + exit code, Ctrl-C to a resume hint + 130. No tracebacks.

    SQLite and OS errors that escape the API (a full disk, a file removed underneath) also become one line, exit 2.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import sqlite3

        try:
            return fn(*args, **kwargs)
        except DocstreamError as e:
            err(f"Error: {_one_line(e)}")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err("Interrupted — what was read is saved; run the same command again to resume.")
            raise typer.Exit(130) from None
        except sqlite3.Error as e:
            err(f"Error: the index database failed ({_one_line(e)}) — check free disk space, then run the same "
                "command again (add --reread to `read` to start the index over)")
            raise typer.Exit(2) from None
        except OSError as e:
            where = f" ({_one_line(e.filename)})" if getattr(e, "filename", None) else ""  # type: ignore[arg-type]
            err(f"Error: {_one_line(e.strerror or e)}{where} — check the path, its permissions and free disk space")
            raise typer.Exit(2) from None

    return wrapper


def dump(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=2))
