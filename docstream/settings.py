"""Reading settings: everything that changes what a read produces, and so part of the index's identity.

Design choices:
- One frozen dataclass, `ReadSettings`; its `to_dict()` is hashed with the model name into the index file name
  (`index.settings_hash`), so a read with other settings never reuses (or corrupts) an index made with these.
  The weight format is one of them: notes read by fp16w and int8 weights differ, so each has its own index.
- `validated()` checks every combination before any index file exists, each failure a `SettingsError` whose
  message names the flag to change.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import SettingsError

MIN_CHUNK_TOKENS = 16  # the chunker refuses smaller chunks too (checked here, before any index file exists)


@dataclass(frozen=True)
class ReadSettings:
    """Everything that changes what a read produces; part of the index's identity."""

    window: int = 2048
    sinks: int = 4
    chunk_tokens: int = 0  # 0 = a quarter of the window
    summary_every: int = 16
    note_tokens: int = 28
    summary_tokens: int = 96
    max_pinned: int = 320
    note_context: int = 0  # window tokens a note is decoded from (0 = one chunk: the chunk just read)
    reader_version: int = 10  # bumped when notes or summaries change: an old index is then not reused
    weights: str = "fp32"  # the model's weight format (`backend.model.FORMATS`; "server" for a remote model)

    def resolved(self, context_length: int) -> "ReadSettings":
        chunk = self.chunk_tokens or max(64, self.window // 4)
        s = ReadSettings(**{**asdict(self), "chunk_tokens": chunk, "note_context": self.note_context or chunk})
        if s.sinks < 1:
            raise SettingsError(f"--sinks {s.sinks} is too few — use at least 1 attention sink (the default is 4)")
        if chunk < MIN_CHUNK_TOKENS:
            raise SettingsError(f"--chunk-tokens {chunk}: chunk size {chunk} tokens is too small — use at least "
                                f"{MIN_CHUNK_TOKENS}")
        if chunk > s.window - s.note_tokens - 64:
            most = s.window - s.note_tokens - 64
            fix = (f"use --chunk-tokens ≤ {most} or a larger --window" if most >= MIN_CHUNK_TOKENS
                   else f"use --window ≥ {MIN_CHUNK_TOKENS + s.note_tokens + 64}")
            raise SettingsError(f"--chunk-tokens {chunk} does not fit the window of {s.window} with room for a note "
                                f"— {fix}")
        total = s.sinks + s.max_pinned + s.window
        if total > context_length:
            raise SettingsError(f"--window {s.window} is too large: sinks + pinned + window = {total} exceeds the "
                                f"model's context of {context_length} — use --window ≤ "
                                f"{context_length - s.sinks - s.max_pinned}")
        return s

    def to_dict(self) -> dict[str, int | str]:
        d: dict[str, int | str] = asdict(self)
        if d["weights"] == "fp32":  # indexes made before there were weight formats were all fp32: still valid
            del d["weights"]
        return d
