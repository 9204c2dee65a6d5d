"""domain/words.py: the one split of text search, used at capture and on every query."""

from __future__ import annotations

from errorreplay_server.domain.words import MAX_WORD_CHARS, MAX_WORDS_PER_MESSAGE, words


def test_words_are_casefolded_unicode_word_runs_in_order_once() -> None:
    assert words("Timeout in Straße (x.y) [z] *.* 100% done, TIMEOUT again") == [
        "timeout",
        "in",
        "strasse",
        "x",
        "y",
        "z",
        "100",
        "done",
        "again",
    ]
    assert words("order_7: card-expired café 日本語") == ["order_7", "card", "expired", "café", "日本語"]


def test_text_without_word_characters_has_no_words() -> None:
    assert words("* \" ' ; -- ()") == []
    assert words("") == []


def test_long_words_are_cut_and_word_count_is_bounded() -> None:
    assert words("x" * 100) == ["x" * MAX_WORD_CHARS]
    many = " ".join(f"w{i}" for i in range(MAX_WORDS_PER_MESSAGE + 50))
    assert len(words(many)) == MAX_WORDS_PER_MESSAGE
