"""The per-document SQLite tag index (`Index`) and its full-text search.

    from docstream.index import Index, default_path, settings_hash
    with Index.open(default_path(sha, settings_hash(model, settings))) as ix:
        ix.add_note(3, "Victor reaches Ingolstadt.", {"model": ["Ingolstadt", "university"]})
        ix.search("Ingolstadt")
"""
from docstream.index.db import SCHEMA_VERSION, Index, default_path, settings_hash
from docstream.index.rows import DocumentInfo, Hit, IndexedChapter, IndexedChunk, Note, Summary
from docstream.index.search import Tag, fts_query, fts_terms, normalize_tag

__all__ = [
    "SCHEMA_VERSION", "DocumentInfo", "Hit", "Index", "IndexedChapter", "IndexedChunk", "Note", "Summary",
    "Tag", "default_path", "fts_query", "fts_terms", "normalize_tag", "settings_hash",
]
