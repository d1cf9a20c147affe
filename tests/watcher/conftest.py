"""Real folders, a real migrated SQLite database, a real Celery app over the embedded SQL broker."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.settings import (
    BrokerSettings,
    DatabaseSettings,
    Settings,
    SourceSettings,
    StorageSettings,
    TargetSettings,
    WatchSettings,
    WorkSettings,
)
from vigil.ops.celery_app import make_celery
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import make_engine, session_factory
from vigil.store.migrate import upgrade
from watcher.service import WatcherService
from workers.testing.clips import write_clip_mp4v

_unique = itertools.count()


@pytest.fixture(scope="session")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    write_clip_mp4v(path, seconds=1, fps=10, size=(64, 48))
    return path.read_bytes()


@pytest.fixture
def make_clip(clip_bytes: bytes) -> Callable[..., Path]:
    """A valid 1 s 64x48 mp4v clip at `path`; unique content unless `same=True` (bytes after the moov)."""

    def make(path: Path, *, same: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tail = b"" if same else f"vigil-test-{os.getpid()}-{next(_unique)}".encode()
        path.write_bytes(clip_bytes + tail)
        return path

    return make


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    upgrade(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(DatabaseSettings(url=db_url))
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    path = tmp_path / "drop"
    path.mkdir()
    return path


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqla+sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def make_settings(db_url: str, broker_url: str, drop: Path, tmp_path: Path) -> Callable[..., Settings]:
    def make(
        *,
        sources: list[SourceSettings] | None = None,
        broker: str | None = None,
        targets: list[TargetSettings] | None = None,
        **watch: Any,
    ) -> Settings:
        watch.setdefault("settle_s", 0.3)
        watch.setdefault("ready_deadline_s", 5.0)
        watch.setdefault("rescan_interval_s", 60.0)
        return Settings(
            database=DatabaseSettings(url=db_url),
            broker=BrokerSettings(url=broker or broker_url),
            watch=WatchSettings(sources=sources or [SourceSettings(name="drop", path=drop)], **watch),
            work=WorkSettings(reconcile_interval_s=60.0, requeue_after_s=60.0),
            targets=targets or [],
            storage=StorageSettings(data_dir=tmp_path / "data"),
        )

    return make


@pytest.fixture
def apps() -> Iterator[list[Celery]]:
    made: list[Celery] = []
    yield made
    for app in made:
        app.close()


@pytest.fixture
def make_enqueuer(factory: sessionmaker[Session], apps: list[Celery]) -> Callable[[Settings], Enqueuer]:
    def make(settings: Settings) -> Enqueuer:
        app = make_celery(settings)
        apps.append(app)
        return Enqueuer(app, factory)

    return make


@pytest.fixture
def start_watcher(
    factory: sessionmaker[Session],
    make_settings: Callable[..., Settings],
    make_enqueuer: Callable[..., Enqueuer],
) -> Iterator[Callable[..., WatcherService]]:
    """Start a WatcherService in-process; every one started is stopped at teardown."""
    started: list[WatcherService] = []

    def start(settings: Settings | None = None, **kwargs: Any) -> WatcherService:
        settings = settings or make_settings()
        service = WatcherService(settings, factory=factory, enqueuer=make_enqueuer(settings), **kwargs)
        service.start()
        started.append(service)
        assert service.wait_idle(10), "startup scan did not finish"
        return service

    yield start
    for service in started:
        service.stop()
