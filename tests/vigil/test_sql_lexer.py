"""The lexer words refusals the way PostgreSQL (and SQLite) read the text; it never decides what runs."""

from __future__ import annotations

import pytest

from vigil.sql.lexer import first_word, is_empty, numbered_parameters, one_statement


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("/* /* */ SELECT */ COPY (SELECT 1)", "copy"),  # PostgreSQL nests block comments
        ("-- SELECT\nDELETE FROM media", "delete"),
        ("((SELECT 1))", "select"),
        ("  /* a */ -- b\n\tWITH x AS (SELECT 1) SELECT 1", "with"),
        ('"select" FROM x', None),
        ('U&"\\0073elect"', None),
        ("$$ SELECT $$", None),
        ("/* unterminated SELECT", None),
    ],
)
def test_first_word_follows_postgresql(sql: str, word: str | None) -> None:
    assert first_word(sql) == word


def test_sqlite_does_not_nest_comments() -> None:
    assert first_word("/* /* */ SELECT */ COPY", nested_comments=False) == "select"


@pytest.mark.parametrize(
    ("sql", "statement"),
    [
        ("SELECT 1;", "SELECT 1"),
        ("SELECT 1 ; -- done\n ;", "SELECT 1"),
        ("SELECT $a$;$a$ ;", "SELECT $a$;$a$"),
        ("SELECT ';' /* ; */", "SELECT ';'"),
        ("SELECT E'\\';' ;", "SELECT E'\\';'"),
        ('SELECT ";" FROM x;', 'SELECT ";" FROM x'),
        ("SELECT 1; DROP TABLE media", None),
        ("SELECT 1; COMMIT; DELETE FROM media", None),
    ],
)
def test_one_statement_strips_only_the_end(sql: str, statement: str | None) -> None:
    assert one_statement(sql) == statement


def test_empty() -> None:
    assert is_empty(" ; -- nothing\n /* */ ;") and not is_empty("SELECT 1")


def test_named_parameters_become_numbered_outside_strings_comments_and_casts() -> None:
    sql = "SELECT :a, x::int, ':c', $$:d$$, \"x:e\", :b /* :f */, :a -- :g"
    numbered = "SELECT $1, x::int, ':c', $$:d$$, \"x:e\", $2 /* :f */, $1 -- :g"
    assert numbered_parameters(sql) == (numbered, ["a", "b"])
