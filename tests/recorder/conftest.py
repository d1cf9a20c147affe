"""The recorder against a real RTSP server, with the watcher's real folders, database and Celery app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.rtsp import RtspServer, require_gstreamer
from tests.watcher.conftest import (  # noqa: F401 - the watcher's fixtures, shared
    apps,
    broker_url,
    clip_bytes,
    db_url,
    drop,
    engine,
    factory,
    make_enqueuer,
    make_settings,
    start_watcher,
)


@pytest.fixture
def rtsp(tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """Start RTSP servers (`rtsp(gop=10, user=…, password=…)`); every one is killed at teardown."""
    require_gstreamer()
    started: list[RtspServer] = []

    def start(**kwargs: object) -> RtspServer:
        server = RtspServer(tmp_path / f"rtsp-{len(started)}.log", **kwargs)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
