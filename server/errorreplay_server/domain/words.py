"""Text search's one meaning, shared by SQLite, Neo4j and the stream matcher.

A message is split into words once, at capture: the text is case folded (str.casefold), and a word
is a maximal run of Unicode word characters (letters, digits and the underscore: Python's `\\w`).
Each word is cut to its first MAX_WORD_CHARS characters, and a message keeps its first
MAX_WORDS_PER_MESSAGE distinct words. Every store indexes that word set. A query's text is split
the same way, and an error matches when every one of the query's words is one of its words:
whole words, any order, no phrases, no prefixes, no syntax. A text without words (only spaces or
punctuation) sets no condition. docs/ARCHITECTURE.md §3 and README "Stores" document it.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
# Longer words are indexed (and searched) by this prefix: index keys stay small on every store.
MAX_WORD_CHARS = 64
# A 16 KiB message of distinct words would otherwise write thousands of index entries.
MAX_WORDS_PER_MESSAGE = 512


def words(text: str) -> list[str]:
    """The distinct words of `text`, in order of first appearance (see the module docstring)."""
    found: dict[str, None] = {}
    for match in _WORD.finditer(text.casefold()):
        found.setdefault(match.group()[:MAX_WORD_CHARS], None)
        if len(found) >= MAX_WORDS_PER_MESSAGE:
            break
    return list(found)
