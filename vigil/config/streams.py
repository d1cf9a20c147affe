"""The settings of a stream source: a `[[watch.sources]]` entry with a `url` is recorded by the recorder
(`recorder/`) into segments in its `path`, which the watcher then registers like any camera's upload.

The URL never carries a password (it would end up in logs and process lists): the password comes from an
environment variable (`password_env`) or a file (`password_file`), read when connecting.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from vigil.config.base import Problem, Seconds, Section

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


def check_stream_url(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    if parts.scheme not in STREAM_SCHEMES or not parts.hostname:
        raise ValueError(f"must be an {', '.join(s + '://' for s in STREAM_SCHEMES)} URL with a host")
    if parts.password is not None:
        raise ValueError("holds a password: put it in password_env or password_file, never in the URL")
    return url


class StreamFields(Section):
    """What a source needs to be a stream; unset `url`: a folder filled by someone else."""

    url: str | None = None
    segment_s: Annotated[float, Field(ge=2, le=3600)] = 30.0
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    username: str | None = None
    password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    password_file: Path | None = None
    # Reconnecting: the first wait, doubled after each failure up to the last, each +-25% at random.
    reconnect_min_s: Seconds = 1.0
    reconnect_max_s: Seconds = 30.0
    # A connection whose packets stop for this long (or that sends no keyframe for 3x this) is dropped.
    read_timeout_s: Seconds = 10.0
    moved_keys: ClassVar[dict[str, str]] = dict.fromkeys(
        ("offline_alert_s", "offline_channels"),
        'write an [[alerts.rules]] with on = "camera_offline", after_s and channels (docs/operations.md)',
    )

    _url = field_validator("url")(classmethod(lambda cls, v: check_stream_url(v)))


def stream_problems(sources: Iterable[StreamFields]) -> list[Problem]:
    """What a stream source's settings get wrong across keys."""
    problems = []
    for s in sources:
        where = f"watch.sources[{getattr(s, 'name', '?')}]"
        if s.url is None and (s.password_env or s.password_file):
            problems.append(Problem(where, "password_* are for a stream: set url, or remove them"))
        if s.password_env and s.password_file:
            problems.append(Problem(where, "set one of password_env and password_file, not both"))
    return problems
