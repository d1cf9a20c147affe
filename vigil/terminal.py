"""Text from files, databases and users made safe to print on a terminal.

A file name or a target description may hold ESC, OSC or ``\\r`` sequences that rewrite the terminal of
whoever prints it. Every C0 control (tab and newline included: they break one-line output), DEL, every C1
control and the Unicode bidirectional overrides are shown escaped: ``\\x1b``, ``\\r``, ``\\u202e``.
CSV and JSON output stays exact and does not use this.
"""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object) -> str:
    """``text`` as one line with every control character shown escaped (``\\x1b``, ``\\r``, ``\\u202e``)."""
    return _UNSAFE.sub(_escape, str(text))


def safe_lines(text: object) -> str:
    """Like :func:`safe`, but keeping the newlines of a message made of several lines (a traceback, the
    problems of a settings file): each line is escaped on its own."""
    return "\n".join(safe(line) for line in str(text).split("\n"))


def display_width(text: str) -> int:
    """Columns `text` takes on a terminal: wide (CJK) and full-width characters take two, combining marks
    and zero-width characters none (`len` would count one each and break a table's alignment)."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def pad(text: str, width: int, *, right: bool = False) -> str:
    """`text` padded with spaces to `width` display columns (see display_width), on the left if `right`."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def plural(count: int, noun: str) -> str:
    """ "1 window", "2 windows", "0 windows" (a regular English plural)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
