"""Summaries: grounding (`grounding.py`), the hierarchical merge and chapter summaries (`reduce.py`), and the book
summary with the hierarchy the reading pass stores (`book.py`)."""
from .book import (
                   LENGTHS,
                   PART_WORDS,
                   book_forks,
                   book_groups,
                   book_inputs,
                   book_parts,
                   book_summary,
                   build_hierarchy,
                   chapter_lines,
                   main_people,
                   part_prefill,
)
from .grounding import Part, ground_part, grounded, join_parts
from .reduce import chapter_fork, chapter_prefill, chapter_summary, reduce

__all__ = ["LENGTHS", "PART_WORDS", "Part", "book_forks", "book_groups", "book_inputs", "book_parts", "book_summary",
           "build_hierarchy", "chapter_fork", "chapter_lines", "chapter_prefill", "chapter_summary", "ground_part",
           "grounded", "join_parts", "main_people", "part_prefill", "reduce"]
