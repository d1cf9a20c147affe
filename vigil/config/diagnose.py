"""Every problem of the settings in one pass, each with the file or environment variable it came from.

Pydantic reports the invalid values of a tree at once, but a check that needs valid values (a section's
model validator, the references across sections) runs only when they are valid: a user fixed two problems
to be shown the next two. Here the inputs (the TOML file, the `VIGIL_*` variables, explicit overrides) are
read once and merged as pydantic-settings merges them (later wins, tables merge); the tree is validated;
every invalid value is reported and taken out (a required one takes its list item with it, so a target
without a description is reported once, not again as "missing name"); the rest is validated again until
what is left is valid. The checks across sections then run on that remainder, knowing every name the input
declared, so a channel refused for its url is not also reported as missing by each rule naming it.

Keys are shown as `alerts.rules[night].hours`: a list item by its name when it has one, else its position
in the input.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from vigil.config.base import NAME_PATTERN, Problem, error_message
from vigil.config.checks import did_you_mean, refuse
from vigil.config.inputs import Inputs, Loc, is_required, model_at

# Set while `validate` builds a tree from inputs it read itself: the settings class then takes only the
# values given (no source is read again) and leaves its checks across sections to `Diagnosis`.
VALIDATING_INPUTS: ContextVar[bool] = ContextVar("vigil_validating_inputs", default=False)

MAX_ROUNDS = 25  # each round takes at least one value out; a tree this broken is reported in part
_PRUNED = object()


@dataclass
class Diagnosis:
    """The outcome of `diagnose`: every error and warning, and the settings when there is no error (else
    the valid remainder, for further checks; None when nothing could be read)."""

    inputs: Inputs
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    remainder: Any = None
    # Names of the list items the input declared, valid or not, by list (`targets`, `alerts.channels`).
    declared: dict[str, set[str]] = field(default_factory=dict)

    def locate(self, problem: Problem | str) -> Problem:
        """A problem with its origin, from its key."""
        if isinstance(problem, str):
            return Problem("", problem, origin=None)
        if problem.origin is not None or not problem.key:
            return problem
        return Problem(problem.key, problem.message, origin=self.inputs.origin_of_key(problem.key))

    def add_errors(self, problems: list[Problem]) -> None:
        self.errors = _unique([*self.errors, *(self.locate(p) for p in problems)])

    def add_warnings(self, problems: list[Problem]) -> None:
        self.warnings = _unique([*self.warnings, *(self.locate(p) for p in problems)])

    def raise_errors(self) -> None:
        refuse(ordered(self.errors))


def diagnose(
    settings_cls: type[BaseModel], inputs: Inputs, *, read_errors: Sequence[Problem] = ()
) -> Diagnosis:
    """Validate `inputs` as `settings_cls`, collecting every problem (see the module docstring);
    `read_errors` are those met reading the inputs."""
    diagnosis = Diagnosis(inputs)
    diagnosis.add_errors(list(read_errors))
    original = inputs.merged()
    diagnosis.declared = _declared_names(original)
    data = copy.deepcopy(original)
    taken: list[Loc] = []
    for _ in range(MAX_ROUNDS):
        working, positions = _compact(data, ())
        try:
            diagnosis.remainder = validate(settings_cls, working)
            break
        except ValidationError as exc:
            progressed = False
            for error in exc.errors():
                loc = _in_input(tuple(error["loc"]), positions)
                message = _message(settings_cls, error, loc)
                if not _follows_from(loc, message, taken):
                    key = render_key(original, loc)
                    diagnosis.errors.append(Problem(key, message, origin=inputs.origin(_key_path(loc))))
                if _prune(data, loc, settings_cls):
                    progressed = True
                    taken.append(loc)
            if not progressed:
                break
    diagnosis.errors = _unique(diagnosis.errors)
    return diagnosis


def validate(settings_cls: type[BaseModel], data: dict[str, Any]) -> Any:
    token = VALIDATING_INPUTS.set(True)
    try:
        return settings_cls(**data)
    finally:
        VALIDATING_INPUTS.reset(token)


def render_key(data: Any, loc: Loc) -> str:
    """`alerts.rules[night].hours` for ("alerts", "rules", 0, "hours"), read against the input."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            valid = isinstance(name, str) and re.fullmatch(NAME_PATTERN, name)
            out += f"[{name}]" if valid else f"[{part}]"
            node = item
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _message(settings_cls: type[BaseModel], error: Mapping[str, Any], loc: Loc) -> str:
    if error["type"] == "extra_forbidden" and loc:
        model = model_at(settings_cls, loc[:-1])
        moved = getattr(model, "moved_keys", {}).get(str(loc[-1]))
        if moved is not None:
            return f"moved: {moved}"
        known = model.model_fields if model is not None else ()
        return f"unknown key ({did_you_mean(str(loc[-1]), known)})"
    return error_message(error)


def _follows_from(loc: Loc, message: str, taken: list[Loc]) -> bool:
    """A section's complaint about a key already reported and taken out ("a webhook channel needs url"
    after its url was refused) says nothing new."""
    return any(
        len(gone) > len(loc)
        and gone[: len(loc)] == loc
        and re.search(rf"\b{re.escape(str(gone[-1]))}\b", message)
        for gone in taken
    )


def ordered(problems: list[Problem]) -> list[Problem]:
    """By origin (the file, then each variable), then key."""
    return sorted(problems, key=lambda p: (p.origin or "", p.key))


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _key_path(loc: Loc) -> list[str]:
    path = []
    for part in loc:
        if isinstance(part, int):
            break
        path.append(part)
    return path


def _declared_names(data: dict[str, Any]) -> dict[str, set[str]]:
    lists = {
        "targets": data.get("targets"),
        "watch.sources": _section_list(data, "watch", "sources"),
        "alerts.channels": _section_list(data, "alerts", "channels"),
        "alerts.rules": _section_list(data, "alerts", "rules"),
    }
    return {
        key: {item["name"] for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)}
        for key, items in lists.items()
        if isinstance(items, list)
    }


def _section_list(data: dict[str, Any], section: str, key: str) -> Any:
    table = data.get(section)
    return table.get(key) if isinstance(table, dict) else None


def _compact(data: Any, path: Loc) -> tuple[Any, dict[Loc, list[int]]]:
    """`data` without the items taken out, and for each list the input position of each item left."""
    positions: dict[Loc, list[int]] = {}
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out[key], inner = _compact(value, (*path, key))
            positions.update(inner)
        return out, positions
    if isinstance(data, list):
        kept = [i for i, item in enumerate(data) if item is not _PRUNED]
        positions[path] = kept
        items = []
        for i in kept:
            item, inner = _compact(data[i], (*path, i))
            items.append(item)
            positions.update(inner)
        return items, positions
    return data, positions


def _in_input(loc: Loc, positions: dict[Loc, list[int]]) -> Loc:
    """An error's location in the validated remainder, as a location in the input."""
    out: Loc = ()
    for part in loc:
        kept = positions.get(out)
        if isinstance(part, int) and kept is not None and 0 <= part < len(kept):
            part = kept[part]
        out = (*out, part)
    return out


def _prune(data: Any, loc: Loc, settings_cls: type[BaseModel]) -> bool:
    """Take the value at `loc` out of `data` (its deepest part present); a required key takes its list
    item or table with it. False when there is nothing to take (a check of the whole tree)."""
    path = list(_present(data, loc))
    while path and isinstance(path[-1], str) and is_required(settings_cls, tuple(path)):
        path.pop()
    if not path:
        return False
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if isinstance(parent, list) and isinstance(path[-1], int):
        parent[path[-1]] = _PRUNED
    else:
        del parent[path[-1]]
    return True


def _present(data: Any, loc: Loc) -> Iterator[str | int]:
    for part in loc:
        in_table = isinstance(data, dict) and part in data
        if not in_table and not (isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)):
            return
        data = data[part]
        if data is _PRUNED:
            return
        yield part
