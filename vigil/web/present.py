"""How stored text is shown to a reviewer: names with their bidirectional controls made visible, and
worker or delivery errors as one short line without file-system paths or credentials.

A name such as ``report\\u202efdp.mp4`` would display as ``report4pm.pdf``; every value a page prints goes
through `visible_controls` (the templates' ``finalize``), so no stored string can reorder what follows it.
Errors come from OpenCV, FFmpeg, SMTP and HTTP clients and may carry absolute paths, URLs with tokens or a
traceback: `public_reason` keeps the last line, with paths shortened to their file name and URLs to
scheme and host.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup

BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://(?:[^\s/@'\"<>]*@)?([^\s/'\"?#<>]*)[^\s'\"<>]*")
POSIX_PATH = re.compile(r"(?<![\w.~:/])/(?:[^\s/'\"<>:;,()]+/)+([^\s/'\"<>:;,()]*)")
WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\(?:[^\s\\'\"<>]+\\)+([^\s\\'\"<>]*)")
MAX_REASON = 300


def _named(match: re.Match[str]) -> str:
    return f"<U+{ord(match.group()):04X}>"


def visible_controls(value: Any) -> Any:
    """`value` with each bidirectional control character shown as ``<U+202E>`` (Jinja's finalize)."""
    if isinstance(value, Markup):
        return Markup(BIDI_CONTROLS.sub(lambda m: str(Markup.escape(_named(m))), value))
    if isinstance(value, str) and BIDI_CONTROLS.search(value):
        return BIDI_CONTROLS.sub(_named, value)
    return value


def public_reason(error: str | None) -> str | None:
    """An error as a reviewer may see it: its last line, paths reduced to file names, URLs to their host."""
    if not error:
        return error
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    line = URL.sub(r"\1://\2", line)
    line = POSIX_PATH.sub(lambda m: f"…/{m.group(1)}", line)
    line = WINDOWS_PATH.sub(lambda m: f"…\\{m.group(1)}", line)
    line = visible_controls(line.replace("\x00", ""))
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"
