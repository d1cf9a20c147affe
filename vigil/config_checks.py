"""The semantic checks of the settings tree, called by the validators of `vigil.settings`.

Every check a command could make later is made here, when the settings are built, so `vigil config check`
is the truth: after `ok`, no command refuses the same settings. Problems that may go away by themselves (a
source folder not mounted yet, a model directory not copied yet) are warnings that name the path; they
never stop a process.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from vigil.errors import ConfigError

WEBHOOK_SCHEMES = ("http", "https")
WHSEC_PREFIX = "whsec_"
GLOB_CHARS = re.compile(r"[*?\[]")
# Environment variables of Vigil that are not settings (and so have no section).
NON_SETTING_VARIABLES = frozenset({"VIGIL_CONFIG"})
BUILTIN_CHANNEL = "log"


class _Named(Protocol):
    name: str


N = TypeVar("N", bound=_Named)


def require_unique_names(items: list[N], what: str) -> list[N]:
    names = [item.name for item in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique, repeated: {', '.join(dupes)}")
    return items


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in WEBHOOK_SCHEMES or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    return url


def check_webhook_secret(secret: str) -> str:
    """A secret that says it is a Standard Webhooks secret ("whsec_") must be one: base64 after the prefix."""
    if not secret.startswith(WHSEC_PREFIX):
        return secret
    encoded = secret.removeprefix(WHSEC_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ValueError('a "whsec_" secret must be "whsec_" followed by base64 (Standard Webhooks)')
    return secret


def check_hours(text: str) -> str:
    from vigil.rules import parse_hours

    _as_value_error(lambda: parse_hours(text, where="rule"))
    return text


def check_timezone(name: str) -> str:
    from vigil.rules import parse_zone

    _as_value_error(lambda: parse_zone(name, where="rule"))
    return name


def check_template_text(text: str) -> str:
    from vigil.template import check_template

    _as_value_error(lambda: check_template(text, where="rule.message"))
    return text


def _as_value_error(check: Any) -> None:
    """Run a core parser that raises ConfigError("where.key: reason"); pydantic wants a ValueError."""
    try:
        check()
    except ConfigError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from exc


def reference_problems(
    *,
    targets: Iterable[str],
    channels: Iterable[str],
    sources: Iterable[str],
    rules: Iterable[Any],
    source_confs: Iterable[Any],
) -> list[str]:
    """Names that refer to nothing, as "key: reason" lines (rules → targets, channels, sources)."""
    targets, channels, sources = set(targets), set(channels) | {BUILTIN_CHANNEL}, set(sources)
    problems = []
    for rule in rules:
        where = f"alerts.rules[{rule.name}]"
        if unknown := sorted(set(rule.targets) - targets):
            problems.append(f"{where}.targets: no target named {', '.join(unknown)} in the settings")
        if unknown := sorted(set(rule.channels) - channels):
            problems.append(f"{where}.channels: no channel named {', '.join(unknown)} in the settings")
        if not rule.channels:
            problems.append(f'{where}.channels: a rule needs at least one channel (e.g. "log")')
        literal = {s for s in rule.sources if not GLOB_CHARS.search(s)}
        if unknown := sorted(literal - sources):
            problems.append(f"{where}.sources: no source named {', '.join(unknown)} in the settings")
    for source in source_confs:
        if source.targets and (unknown := sorted(set(source.targets) - targets)):
            problems.append(
                f"watch.sources[{source.name}].targets: no target named {', '.join(unknown)} in the settings"
            )
    return problems


def looks_like_path(model_id: str) -> bool:
    """A hub id is "org/name"; an absolute, ./ or ~ path, or one with more than one slash, is a directory."""
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or Path(model_id).exists()


def model_directory_problem(model_id: str) -> str | None:
    if looks_like_path(model_id) and not Path(model_id).expanduser().is_dir():
        return f"model.id: {model_id} looks like a directory but there is none"
    return None


def path_warnings(*, sources: Iterable[Any], model_id: str) -> list[str]:
    warnings = [
        f"watch.sources[{s.name}].path: {s.path} is not a directory (not watched until it exists)"
        for s in sources
        if not Path(s.path).is_dir()
    ]
    if problem := model_directory_problem(model_id):
        warnings.append(problem)
    return warnings


def environment_problems(environ: Mapping[str, str], sections: Iterable[str]) -> list[str]:
    """`VIGIL_SECTION__KEY` variables whose section does not exist (pydantic would ignore them silently)."""
    known = {name.upper() for name in sections}
    problems = []
    for key in sorted(environ):
        if not key.startswith("VIGIL_") or key in NON_SETTING_VARIABLES or "__" not in key:
            continue
        section = key.removeprefix("VIGIL_").split("__", 1)[0]
        if section not in known:
            problems.append(
                f"environment variable {key}: no settings section {section.lower()!r} "
                f"(sections: {', '.join(sorted(s.lower() for s in known))})"
            )
    return problems


def raise_environment_problems(sections: Iterable[str]) -> None:
    problems = environment_problems(os.environ, sections)
    if problems:
        raise ConfigError("\n".join([f"{len(problems)} invalid setting(s):", *(f"  {p}" for p in problems)]))
