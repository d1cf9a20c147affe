"""A small, safe message template: `str.format` syntax over a fixed set of named str/float values.

Only bare field names from the allowed set are accepted: attribute access (`{target.__class__}`), index
access (`{path[0]}`), positional fields (`{}`, `{0}`), nested fields inside a format spec and huge widths
are refused when the rule is loaded, so a template can neither reach Python objects nor blow up memory.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from vigil.errors import ConfigError

FIELDS: dict[str, str | float] = {
    "rule": "rule",
    "target": "target",
    "description": "a description",
    "source": "source",
    "path": "/path/to/file.mp4",
    "file": "file.mp4",
    "score": 0.5,
    "min_score": 0.5,
    "start_s": 0.0,
    "end_s": 10.0,
    "severity": "warning",
    "time": "2026-01-01T00:00:00+00:00",
    "media_id": 1,
    "evidence": "",
}

# fill+align, sign, z, #, 0, width (at most 3 digits), grouping, precision (at most 2 digits), type
_SPEC = re.compile(r"(.?[<>=^])?[+\- ]?z?#?0?\d{0,3}[,_]?(\.\d{1,2})?[bcdeEfFgGnosxX%]?")
_FORMATTER = string.Formatter()


def check_template(template: str, *, fields: Mapping[str, object] = FIELDS, where: str) -> None:
    """Raise ConfigError naming `where` unless the template only uses allowed fields safely."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad template {template!r}: {exc}") from exc
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in fields:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: template field {{{name}}} is not allowed (use one of: {allowed})")
        if conversion not in (None, "s", "r"):
            raise ConfigError(f"{where}: template conversion !{conversion} is not allowed")
        if spec and ("{" in spec or not _SPEC.fullmatch(spec)):
            raise ConfigError(f"{where}: template format spec {spec!r} is not allowed")
    try:
        template.format_map(dict(fields))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ConfigError(f"{where}: template {template!r} does not render: {exc}") from exc


def render(template: str, values: Mapping[str, str | float], *, where: str = "template") -> str:
    """Render a template checked against the values it is given (a plain dict of str/float)."""
    check_template(template, fields=values, where=where)
    return template.format_map(dict(values))
