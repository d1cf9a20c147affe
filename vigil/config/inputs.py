"""What the settings are built from, kept apart to say where each value came from: the TOML file, the
`VIGIL_*` environment variables (read as pydantic-settings reads them) and explicit overrides; and the
lookups in the settings' schema that say which section holds a key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError, TomlConfigSettingsSource

from vigil.config import checks
from vigil.config.base import Problem

Loc = tuple[str | int, ...]  # a key path into the settings, list positions as numbers


@dataclass
class Inputs:
    """What the settings are built from, each part kept apart to say where a value came from."""

    file: Path | None = None
    file_data: dict[str, Any] = field(default_factory=dict)
    env_data: dict[str, Any] = field(default_factory=dict)
    # Each `VIGIL_*` variable that sets a value, with the key path it sets (lower case).
    variables: dict[str, list[str]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    def merged(self) -> dict[str, Any]:
        return merge(merge(self.file_data, self.env_data), self.overrides)

    def origin(self, path: list[str]) -> str:
        """Where the value at `path` (keys down to the first list) came from."""
        if has(self.overrides, path):
            return "command-line options"
        setters = [name for name, keys in self.variables.items() if path[: len(keys)] == keys]
        if setters:
            return f"environment variable {max(setters, key=len)}"
        below = [name for name, keys in sorted(self.variables.items()) if keys[: len(path)] == path]
        origins = [f"environment variable {name}" for name in below]
        if self.file is not None and (has(self.file_data, path) or not below):
            origins.insert(0, str(self.file))
        return " and ".join(origins) or "the defaults"

    def origin_of_key(self, key: str) -> str:
        """The origin of a rendered key (`watch.sources[cam1].path`): its path down to the first list."""
        return self.origin([part for part in key.split("[", 1)[0].split(".") if part])


def read_inputs(
    settings_cls: type[BaseSettings], path: Path | None, overrides: dict[str, Any]
) -> tuple[Inputs, list[Problem]]:
    """The TOML file, the `VIGIL_*` variables and the overrides, apart; and the problems reading them."""
    inputs = Inputs(file=path, overrides=overrides)
    problems = checks.environment_problems(os.environ, settings_cls.model_fields)
    if path is not None:
        try:
            inputs.file_data = TomlConfigSettingsSource(settings_cls, toml_file=path)()
        except ValueError as exc:  # TOML syntax errors are ValueError subclasses
            problems.append(Problem("", str(exc), origin=str(path)))
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    for name in os.environ:
        keys = name[len(prefix) :].lower().split("__")
        if name.upper().startswith(prefix) and keys[0] in settings_cls.model_fields:
            inputs.variables[name] = keys
    source = EnvSettingsSource(settings_cls)
    for _ in range(len(source.env_vars) + 1):  # each failed round leaves out at least one variable
        try:
            inputs.env_data = source()
            break
        except SettingsError as exc:  # a value that must be JSON (a list, a table) is not
            found = re.search(r'field "(\w+)"', str(exc))
            key = found.group(1) if found else ""
            unreadable = {
                name: ".".join(keys)
                for name, keys in inputs.variables.items()
                if keys[0] == key and expects_json(settings_cls, keys) and not _is_json(os.environ[name])
            }
            problems += [
                Problem(where, "not valid JSON", origin=f"environment variable {name}")
                for name, where in (unreadable or {"VIGIL_*": key}).items()
            ]
            dropped = {name.lower() for name in unreadable}
            source.env_vars = {
                k: v
                for k, v in source.env_vars.items()
                if k not in dropped and (dropped or k.split("__")[0] != f"{prefix.lower()}{key}")
            }
            if not found:
                break
    return inputs, problems


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key, anything else is replaced (as pydantic-settings merges its sources)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def has(data: Any, path: list[str]) -> bool:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return bool(path)


def is_required(settings_cls: type[BaseModel], path: Loc) -> bool:
    model = model_at(settings_cls, path[:-1])
    info = model.model_fields.get(str(path[-1])) if model is not None else None
    return info is not None and info.is_required()


def model_at(settings_cls: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The settings section that holds the keys at `loc` (list positions skipped)."""
    model: type[BaseModel] | None = settings_cls
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model is not None else None
        model = _inner_model(info.annotation) if info is not None else None
    return model


def expects_json(settings_cls: type[BaseModel], keys: Sequence[str]) -> bool:
    """Whether the value at `keys` is a list, a table or a section: written as JSON in a variable."""
    model = model_at(settings_cls, tuple(keys[:-1]))
    info = model.model_fields.get(keys[-1]) if model is not None and keys else None
    return info is not None and _is_structured(info.annotation)


def _is_structured(annotation: Any) -> bool:
    if get_origin(annotation) in (list, dict, tuple, set) or _inner_model(annotation) is not None:
        return True
    return any(_is_structured(arg) for arg in get_args(annotation) if arg is not type(None))


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _inner_model(arg)) is not None:
            return found
    return None
