"""A lexer that splits SQL the way PostgreSQL (or SQLite) does, for `vigil sql`'s messages only.

It never decides what may run (the server's grammar and privileges do, or SQLite's authorizer); it finds
the first word for a clear refusal and the statement's end so trailing semicolons and comments can be
dropped before the text is wrapped. PostgreSQL nests block comments (``/* /* */ x */`` is one comment),
has dollar quotes (``$tag$ ... $tag$``), ``E'...'`` strings with backslash escapes and ``U&"..."``
identifiers; SQLite nests no comments. An unterminated comment or string runs to the end of the text (the
server then reports it).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["word", "string", "identifier", "comment", "space", "semicolon", "other"]

_WORD = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    start: int


def tokens(sql: str, *, nested_comments: bool = True) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(sql):
        kind, end = _next(sql, i, nested_comments)
        out.append(Token(kind, sql[i:end], i))
        i = end
    return out


def _next(sql: str, i: int, nested: bool) -> tuple[Kind, int]:
    rest = sql[i : i + 3]
    if m := _SPACE.match(sql, i):
        return "space", m.end()
    if rest.startswith("--"):
        end = sql.find("\n", i)
        return "comment", len(sql) if end < 0 else end + 1
    if rest.startswith("/*"):
        return "comment", _block_comment_end(sql, i, nested)
    if sql[i] == ";":
        return "semicolon", i + 1
    if sql[i] == "'":
        return "string", _quoted_end(sql, i, "'", backslash=False)
    if sql[i] == '"':
        return "identifier", _quoted_end(sql, i, '"', backslash=False)
    if rest[:2].lower() == "e'":
        return "string", _quoted_end(sql, i + 1, "'", backslash=True)
    if rest.lower() in {"u&'", 'u&"'}:
        kind: Kind = "string" if rest[2] == "'" else "identifier"
        return kind, _quoted_end(sql, i + 2, rest[2], backslash=False)
    if rest[:2].lower() in {"b'", "x'", "n'"}:
        return "string", _quoted_end(sql, i + 1, "'", backslash=False)
    if sql[i] == "$" and (m := _DOLLAR_TAG.match(sql, i)):
        close = sql.find(m.group(0), m.end())
        return "string", len(sql) if close < 0 else close + len(m.group(0))
    if m := _WORD.match(sql, i):
        return "word", m.end()
    return "other", i + 1


def _block_comment_end(sql: str, i: int, nested: bool) -> int:
    depth, j = 0, i
    while j < len(sql):
        pair = sql[j : j + 2]
        if pair == "/*" and (nested or depth == 0):
            depth, j = depth + 1, j + 2
        elif pair == "*/":
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(sql)


def _quoted_end(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    j = i + 1
    while j < len(sql):
        char = sql[j]
        if backslash and char == "\\":
            j += 2
        elif char == quote:
            if sql[j + 1 : j + 2] == quote:
                j += 2
            else:
                return j + 1
        else:
            j += 1
    return len(sql)


def _meaningful(toks: list[Token]) -> list[Token]:
    return [t for t in toks if t.kind not in ("space", "comment")]


def first_word(sql: str, *, nested_comments: bool = True) -> str | None:
    """The first keyword, lower case, after comments, spaces and opening parentheses; None if none."""
    for tok in _meaningful(tokens(sql, nested_comments=nested_comments)):
        if tok.kind == "other" and tok.text == "(":
            continue
        return tok.text.lower() if tok.kind == "word" else None
    return None


def not_a_read(word: str | None, *, reads: frozenset[str], statements: frozenset[str], only: str) -> str:
    """Why a statement starting with `word` may not run: a word that begins no statement of the dialect
    (`statements`) is a typo, said as a syntax error, not as a refusal; any other is not a read."""
    if word is not None and word not in statements:
        close = difflib.get_close_matches(word, sorted(reads), n=1, cutoff=0.6)
        hint = f"did you mean {close[0].upper()}?" if close else only
        return f"syntax error: {word.upper()} does not begin an SQL statement ({hint})"
    return f"refused: {word.upper() if word else 'this'} is not a read ({only})"


def is_empty(sql: str, *, nested_comments: bool = True) -> bool:
    return all(t.kind == "semicolon" for t in _meaningful(tokens(sql, nested_comments=nested_comments)))


def one_statement(sql: str) -> str | None:
    """The text without trailing semicolons and comments, or None when a second statement follows."""
    toks = _meaningful(tokens(sql))
    while toks and toks[-1].kind == "semicolon":
        toks.pop()
    if any(t.kind == "semicolon" for t in toks):
        return None
    if not toks:
        return ""
    last = toks[-1]
    return sql[: last.start + len(last.text)]


def numbered_parameters(sql: str) -> tuple[str, list[str]]:
    """``:name`` placeholders (outside strings, comments and ``::`` casts) rewritten as ``$1``, ``$2``...

    Returns the new text and the names in number order; a name used twice keeps its number.
    """
    toks = tokens(sql)
    names: list[str] = []
    out: list[str] = []
    skip = False
    for i, tok in enumerate(toks):
        if skip:
            skip = False
            continue
        after = toks[i + 1] if i + 1 < len(toks) else None
        before = toks[i - 1].text if i > 0 else ""
        if tok.text == ":" and before != ":" and after is not None and after.kind == "word":
            if after.text not in names:
                names.append(after.text)
            out.append(f"${names.index(after.text) + 1}")
            skip = True
        else:
            out.append(tok.text)
    return "".join(out), names
