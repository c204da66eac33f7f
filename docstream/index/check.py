"""Checking an index file read-only, for `docstream doctor --index FILE`: nothing is migrated or written.

Every way the file can be wrong (foreign, newer, corrupt, busy) is an `IndexFileError` whose one line says
what to do; a healthy file gives its schema version, journal mode, row counts, document row and migrations.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from docstream.errors import IndexFileError
from docstream.index.db import APPLICATION_ID
from docstream.index.schema import SCHEMA_VERSION


def inspect_file(p: Path) -> dict[str, Any]:
    where = f"index {p}"
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        raise IndexFileError(f"cannot open {where} ({e}) — check its permissions") from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise IndexFileError(f"{where} is not a docstream index — pass the .db file docstream made")
        if version > SCHEMA_VERSION:
            raise IndexFileError(f"{where} was made by a newer docstream (schema {version}, this one knows "
                                 f"{SCHEMA_VERSION}) — upgrade docstream, or read the document again with --reread")
        integrity = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        if integrity != ["ok"]:
            raise IndexFileError(f"{where} is corrupt ({integrity[0][:80]}) — delete it, or read the document "
                                 "again with --reread")
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # an older file lacks the newer tables
                  for t in ("chapters", "chunks", "notes", "tags", "summaries", "windows", "words") if t in have}
        for lvl in ("rolling", "chapter", "book"):
            counts[f"summaries_{lvl}"] = conn.execute("SELECT count(*) FROM summaries WHERE level = ?",
                                                      (lvl,)).fetchone()[0]
        row = conn.execute("SELECT sha256, path, title, model, status, chunks_total, settings, updated "
                           "FROM document WHERE id = 1").fetchone()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        migrations = ([r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]
                      if conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_migrations'").fetchone() else [])
    except sqlite3.OperationalError as e:
        if "locked" in str(e).lower() or "busy" in str(e).lower():
            raise IndexFileError(f"{where} is busy — another docstream process holds it; try again") from None
        raise IndexFileError(f"{where} cannot be checked ({e}) — delete it, or read the document again with "
                             "--reread") from None
    except sqlite3.DatabaseError:
        raise IndexFileError(f"{where} is corrupt — delete it, or read the document again with --reread") from None
    finally:
        conn.close()
    return {"schema_version": version, "journal_mode": mode, "counts": counts, "document": row,
            "migrations": migrations}
