"""The settings of a stream source: a `[[watch.sources]]` entry with a `url` is recorded by the recorder
(`recorder/`) into segments in its `path`, which the watcher then registers like any camera's upload.

The URL never carries a password (it would end up in logs and process lists): the password comes from an
environment variable (`password_env`) or a file (`password_file`), read when connecting.

A stream is a fixed camera whose view is mostly still, and without the gate a CPU falls behind one camera:
unless the source sets `static_gate`, a stream's static-scene gate is on at `STREAM_STATIC_GATE` grey
levels (workers/analysis/static_gate.py; a folder's stays off: its files may come from anywhere). Measured
at SmolVLM2's 512 px frames on a noisy 1280x720 camera-like clip (`bench/realsize_matched.py`;
docs/operations.md, Sizing): windows without motion measured at most 0.29, a person walking through 33, a
person a quarter that size (32x60 px) 10.3, one an eighth that size (16x30 px) 2.5, which any threshold
above it misses. At 4 the quarter-size person still clears the threshold 2.6 times over and a real
camera's noise and compression have 14 times this clip's room. The first window of every file is scored,
so a still 30 s segment (3 windows) costs a third of its model time (a 60 s clip with 10 s of motion: 3 of
6 windows scored, 2x less CPU).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from vigil.config.base import Problem, Seconds, Section

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
STREAM_STATIC_GATE = 4.0  # a stream source's static_gate when it sets none


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

    @model_validator(mode="before")
    @classmethod
    def _gate_for_a_stream(cls, data: Any) -> Any:
        """A stream source that sets no `static_gate` gets `STREAM_STATIC_GATE` (the module says why)."""
        if isinstance(data, dict) and data.get("url") is not None and "static_gate" not in data:
            return {**data, "static_gate": STREAM_STATIC_GATE}
        return data


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
