"""A small, safe message template: `str.format` syntax over a fixed set of named str/float values.

Only bare field names from the allowed set are accepted: attribute access (`{target.__class__}`), index
access (`{path[0]}`), positional fields (`{}`, `{0}`), nested fields inside a format spec and huge widths
are refused when the rule is loaded, so a template can neither reach Python objects nor blow up memory.
The ``c`` type is refused too (it fails for ids past U+10FFFF). A template that passed the check never
raises when it renders: should a value still not fit its spec, the message is rendered without specs.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Mapping

from vigil.errors import ConfigError

log = logging.getLogger(__name__)

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

# The fields of a rule that fires on an event rather than a detection (`on`, vigil.config.alerts).
CAMERA_OFFLINE_FIELDS: dict[str, str | float] = {
    "rule": "rule",
    "severity": "warning",
    "time": "2026-01-01T00:00:00+00:00",
    "host": "host",
    "source": "source",
    "since": "2026-01-01T00:00:00+00:00",
    "minutes": 2.0,
    "reason": "cannot open rtsp://host/stream: Connection refused",
}
DISK_PRESSURE_FIELDS: dict[str, str | float] = {
    "rule": "rule",
    "severity": "warning",
    "time": "2026-01-01T00:00:00+00:00",
    "host": "host",
    "volume": "/srv",
    "free_bytes": 1000,
    "needed_bytes": 5000,
    "min_free": "10%",
}
FIELDS_ON = {
    "detection": FIELDS,
    "camera_offline": CAMERA_OFFLINE_FIELDS,
    "disk_pressure": DISK_PRESSURE_FIELDS,
}

# fill+align, sign, z, #, 0, width (at most 3 digits), grouping, precision (at most 2 digits), type
_SPEC = re.compile(r"(.?[<>=^])?[+\- ]?z?#?0?\d{0,3}[,_]?(\.\d{1,2})?[bdeEfFgGnosxX%]?")
_FORMATTER = string.Formatter()


def check_template(template: str, *, fields: Mapping[str, object] = FIELDS, where: str) -> None:
    """Raise ConfigError naming `where` unless the template only uses allowed fields safely."""
    _check_structure(template, fields, where)
    try:
        template.format_map(dict(fields))
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ConfigError(f"{where}: template {template!r} does not render: {exc}") from exc


def _check_structure(template: str, fields: Mapping[str, object], where: str) -> None:
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


def render(template: str, values: Mapping[str, str | float], *, where: str = "template") -> str:
    """Render a template with the values it is given (a plain dict of str/float).

    A template that is not allowed raises ConfigError (one that bypassed validation); an allowed one never
    raises: a value that does not fit its format spec is shown without specs.
    """
    _check_structure(template, values, where)
    try:
        return template.format_map(dict(values))
    except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
        log.warning("%s: rendered without format specs: %s", where, exc)
        return _plain(template, values)


def _plain(template: str, values: Mapping[str, str | float]) -> str:
    """Each field as plain text (the structure was checked: every field is known)."""
    parts = []
    for literal, name, _spec, _conversion in _FORMATTER.parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(str(values[name]))
    return "".join(parts)
