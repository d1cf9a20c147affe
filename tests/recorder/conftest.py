"""The recorder against a real RTSP server, with the watcher's real folders, database and Celery app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from recorder.service import RecorderService
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
from vigil.config.settings import Settings, SourceSettings
from vigil.store.schema import StreamOutage


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


@pytest.fixture
def recorders(factory: sessionmaker[Session]) -> Iterator[Callable[[Settings], RecorderService]]:  # noqa: F811
    started: list[RecorderService] = []

    def start(settings: Settings) -> RecorderService:
        service = RecorderService(settings, factory=factory)
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def stream(name: str, path: Path, url: str, **kwargs: object) -> SourceSettings:
    fast = {"segment_s": 2.0, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "read_timeout_s": 3.0}
    return SourceSettings(name=name, path=path, url=url, **(fast | kwargs))  # type: ignore[arg-type]


def outages(sessions: sessionmaker[Session]) -> list[StreamOutage]:
    with sessions() as session:
        return list(session.scalars(select(StreamOutage).order_by(StreamOutage.id)))


def segments(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.mp4"))
