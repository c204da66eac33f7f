"""What a backend does, as two Protocols: the local sink-cache engine (`local.py`) and the OpenAI-compatible
one (`openai.py`) both implement them, and every caller (reader, answer, summaries, benchmarks) is typed with
them instead of `Any`.

Design choices:
- A `Stream` is one document flowing through a bounded window: `start`/`repin` set the pinned instruction
  (and rolling summary), `feed` appends document text, `fork` freezes a prompt for a later batched decode,
  `aside` answers a prompt at once. Both leave the window holding document text only.
- A prompt is a user turn; the assistant's turn may be started with `prefill` (the words the answer must start
  with). Backends lay out the turn themselves: no sentinel strings travel inside prompts.
- An option a backend cannot honour is a `SettingsError`, never silently ignored (e.g. `avoid=` n-gram
  blocking needs the logits, which an HTTP server does not expose).
- A fork is opaque to callers: whatever `fork`/`prompt_fork` return goes back to the same backend's `decode`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

Fork = Any  # a backend's own deferred generation: `forks.Fork` locally, `openai.Request` remotely


def fold(text: str) -> str:
    """Line endings as a model is fed them: CRLF and lone CR become LF (offsets stay in the document's text)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


class Stream(Protocol):
    prefilled: int  # document tokens fed so far

    def start(self, system: str, user_intro: str) -> None: ...

    def repin(self, system: str, user_intro: str) -> None: ...

    def feed(self, text: str) -> int: ...

    def fork(self, prompt: str, max_new_tokens: int, stop: tuple[str, ...] = (), prefill: str = "",
             recent: int | None = None, sentence: bool = False, text: str = "",
             avoid: dict | None = None, give_up: Callable[[str], bool] | None = None) -> Fork: ...

    def aside(self, prompt: str, max_new_tokens: int, stop: tuple[str, ...] = (), prefill: str = "") -> str: ...


class Backend(Protocol):
    backend: str  # "local" | "openai"
    tokenizer: Any  # encode/decode; the model's own, or tiktoken's for a remote model with none
    context_length: int
    decoded_tokens: int

    @property
    def name(self) -> str: ...

    def encode(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...

    def stream(self, sinks: int, window: int, max_pinned: int) -> Stream: ...

    def complete(self, system: str, user: str, max_new_tokens: int, stop: tuple[str, ...] = (),
                 prefill: str = "") -> Iterator[str]: ...

    def complete_text(self, system: str, user: str, max_new_tokens: int, stop: tuple[str, ...] = (),
                      prefill: str = "") -> str: ...

    def prompt_fork(self, system: str, user: str, max_new_tokens: int, stop: tuple[str, ...] = (),
                    prefill: str = "", sentence: bool = False) -> Fork: ...

    def decode(self, forks: list[Fork], width: int | None = None) -> list[str]: ...

    def confidence(self, forks: list[Fork]) -> list[float | None]: ...

    def ngrams(self, texts: list[str]) -> dict | None: ...
