"""One exception family. The CLI maps every `DocstreamError` to a single `Error: …` line.

Each message says what went wrong *and* what to do about it; `exit_code` is what the CLI exits with.
"""
from __future__ import annotations


class DocstreamError(Exception):
    """Base class: a problem the user can fix. Never shown with a traceback."""

    exit_code = 2


class InputError(DocstreamError):
    """The document (path, encoding, content) cannot be read."""


class ModelNotFound(DocstreamError):
    """The model name or path does not resolve to a loadable model."""


class SettingsError(DocstreamError):
    """Window, sinks, chunk size or another option is out of range."""


class IndexFileError(DocstreamError):
    """The index database is corrupt, from a newer schema, or busy."""


class QuestionError(DocstreamError):
    """A question is empty or does not fit the window."""


class BackendError(DocstreamError):
    """A remote (OpenAI-compatible) server failed or is unreachable."""


class Interrupted(DocstreamError):
    """Reading was interrupted (Ctrl-C); the work done so far is saved."""

    exit_code = 130


def error_line(e: BaseException) -> str:
    """An error as one line for a result record: our own message, or `Type: message` for anything else,
    whitespace collapsed, at most 500 characters."""
    msg = str(e) if isinstance(e, DocstreamError) else f"{type(e).__name__}: {e}"
    msg = " ".join(msg.split()) or type(e).__name__
    return msg if len(msg) <= 500 else msg[:497] + "..."
