"""The semantic checks of the settings tree, called by the validators of `vigil.config.settings`.

Every check a command could make later is made here, when the settings are built, so `vigil config check`
is the truth: after `ok`, no command refuses the same settings. Problems that may go away by themselves (a
source folder not mounted yet, a model directory not copied yet) are warnings that name the path; they
never stop a process.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from vigil.config.base import Problem
from vigil.config.schedule import parse_hours, parse_zone
from vigil.config.template import FIELDS_ON, check_template
from vigil.errors import ConfigError

WEBHOOK_SCHEMES = ("http", "https")
WHSEC_PREFIX = "whsec_"
GLOB_CHARS = re.compile(r"[*?\[]")
# Environment variables of Vigil that are not settings (and so have no section).
NON_SETTING_VARIABLES = frozenset({"VIGIL_CONFIG"})
BUILTIN_CHANNEL = "log"
DETECTION_KEYS = ("targets", "min_score", "min_consecutive")  # keys that only detection rules have


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
    _as_value_error(lambda: parse_hours(text, where="rule"))
    return text


def check_timezone(name: str) -> str:
    _as_value_error(lambda: parse_zone(name, where="rule"))
    return name


def check_template_text(text: str, *, on: str = "detection") -> str:
    """A rule's message, with the placeholders of the event it fires on."""
    fields = FIELDS_ON.get(on, FIELDS_ON["detection"])
    _as_value_error(lambda: check_template(text, fields=fields, where="rule.message"))
    return text


def check_rule_keys(on: str, *, given: Iterable[str], after_s: float | None) -> None:
    """The keys a rule may have for the event it fires on: target keys on detection rules only, `after_s`
    on (and required by) camera_offline rules, no `sources` on disk_pressure rules (volumes are not)."""
    given = set(given)
    if on != "detection" and (wrong := [k for k in DETECTION_KEYS if k in given]):
        raise ValueError(f'{", ".join(wrong)}: only for detection rules (this one has on = "{on}")')
    if on == "camera_offline" and after_s is None:
        raise ValueError("a camera_offline rule needs after_s: how long an outage lasts before it fires")
    if on != "camera_offline" and "after_s" in given:
        raise ValueError(f'after_s: only for camera_offline rules (this one has on = "{on}")')
    if on == "disk_pressure" and "sources" in given:
        raise ValueError("sources: a disk_pressure rule is about volumes, not sources (remove it)")


def _as_value_error(check: Any) -> None:
    """Run a core parser that raises ConfigError("where.key: reason"); pydantic wants a ValueError."""
    try:
        check()
    except ConfigError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from exc


def reference_problems(*, channels: Iterable[str], rules: Iterable[Any]) -> list[Problem]:
    """Rule references that name nothing. Channels exist only in the settings, so the settings alone
    decide; targets may also be made with the CLI (`missing_targets`)."""
    channels = set(channels) | {BUILTIN_CHANNEL}
    problems = []
    for rule in rules:
        where = f"alerts.rules[{rule.name}].channels"
        if unknown := sorted(set(rule.channels) - channels):
            problems.append(Problem(where, f"no channel named {', '.join(unknown)} in the settings"))
        if not rule.channels:
            problems.append(Problem(where, 'a rule needs at least one channel (e.g. "log")'))
    return problems


def source_warnings(
    *, sources: Iterable[str], rules: Iterable[Any], streams: Iterable[str] = ()
) -> list[Problem]:
    """Rule sources named literally that the settings do not declare: a warning, since `vigil scan DIR`
    and `vigil run --watch DIR` make sources of their own; and a camera_offline rule's declared sources
    that are no stream (no url): nothing records them, so no outage ever fires it."""
    declared, streams = set(sources), set(streams)
    problems = [
        Problem(f"alerts.rules[{rule.name}].sources", f"no source named {', '.join(unknown)} in the settings")
        for rule in rules
        if (unknown := sorted({s for s in rule.sources if not GLOB_CHARS.search(s)} - declared))
    ]
    for rule in rules:
        named = {s for s in rule.sources if not GLOB_CHARS.search(s)} & declared
        if rule.on == "camera_offline" and (folders := sorted(named - streams)):
            problems.append(
                Problem(
                    f"alerts.rules[{rule.name}].sources",
                    f"{', '.join(folders)}: not a stream (no url), so never offline: the rule never fires",
                )
            )
    return problems


def missing_targets(settings: Any, known: Iterable[str]) -> list[Problem]:
    """Targets named by rules and sources of `settings` that are neither declared there nor in `known`
    (the targets table: made with `vigil targets add`)."""
    names = {t.name for t in settings.targets} | set(known)
    referrers = [(f"alerts.rules[{r.name}].targets", r.targets) for r in settings.alerts.rules]
    referrers += [(f"watch.sources[{s.name}].targets", s.targets or []) for s in settings.watch.sources]
    return [
        Problem(where, f"no target named {', '.join(unknown)} in the settings or the database")
        for where, wanted in referrers
        if (unknown := sorted(set(wanted) - names))
    ]


def looks_like_path(model_id: str) -> bool:
    """A hub id is "org/name"; an absolute, ./ or ~ path, or one with more than one slash, is a directory."""
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or Path(model_id).exists()


def model_directory_problem(model_id: str) -> Problem | None:
    if looks_like_path(model_id) and not Path(model_id).expanduser().is_dir():
        return Problem("model.id", f"{model_id} looks like a directory but there is none")
    return None


def path_warnings(*, sources: Iterable[Any], model_id: str) -> list[Problem]:
    """Paths that do not exist (yet): a folder not mounted, a model not copied."""
    warnings = [
        Problem(f"watch.sources[{s.name}].path", f"{s.path} is not a directory (not watched until it exists)")
        for s in sources
        if not Path(s.path).is_dir() and getattr(s, "url", None) is None  # a stream's is made at start
    ]
    if problem := model_directory_problem(model_id):
        warnings.append(problem)
    return warnings


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """ "did you mean `model`?" for the closest known word, else the known words."""
    known = sorted(known)
    close = difflib.get_close_matches(word.lower(), known, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"known: {', '.join(known)}" if known else "nothing is known here"


def environment_problems(environ: Mapping[str, str], sections: Iterable[str]) -> list[Problem]:
    """`VIGIL_SECTION__KEY` variables whose section does not exist (pydantic would ignore them silently)."""
    known = {name.lower() for name in sections}
    problems = []
    for key in sorted(environ):
        if not key.upper().startswith("VIGIL_") or key.upper() in NON_SETTING_VARIABLES or "__" not in key:
            continue
        section = key[len("VIGIL_") :].split("__", 1)[0].lower()
        if section not in known:
            problems.append(
                Problem(
                    "",
                    f"no settings section {section!r} ({did_you_mean(section, known)})",
                    origin=f"environment variable {key}",
                )
            )
    return problems


def refuse(problems: Sequence[Problem | str]) -> None:
    """Raise one ConfigError for every problem: a count, then one indented line each."""
    if problems:
        raise ConfigError("\n".join([f"{len(problems)} invalid setting(s):", *(f"  {p}" for p in problems)]))
