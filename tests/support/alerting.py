"""Helpers for the alerting tests: rows built with the ORM, and a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from vigil.config.settings import (
    AlertSettings,
    ChannelSettings,
    DatabaseSettings,
    RuleSettings,
    Settings,
    TargetSettings,
)
from vigil.declared.apply import apply_settings
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.schema import Alert, Analysis, Detection, Media, Source, Target

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


_ENGINES: list[Engine] = []


def factory_for(url: str) -> sessionmaker[Session]:
    """A session factory whose engine `dispose_engines()` closes (call it from an autouse fixture)."""
    engine = make_engine(DatabaseSettings(url=url))
    _ENGINES.append(engine)
    return session_factory(engine)


def dispose_engines() -> None:
    while _ENGINES:
        _ENGINES.pop().dispose()


def make_settings(
    url: str,
    *,
    rules: list[dict[str, Any]] = (),  # type: ignore[assignment]
    channels: list[dict[str, Any]] = (),  # type: ignore[assignment]
    targets: tuple[tuple[str, float], ...] = (("person", 0.5), ("van", 0.7)),
    **alerts: Any,
) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        targets=[TargetSettings(name=n, description=f"a {n}", threshold=t) for n, t in targets],
        alerts=AlertSettings(
            rules=[RuleSettings(**r) for r in rules],
            channels=[ChannelSettings(**c) for c in channels],
            **alerts,
        ),
    )


def sync_all(
    factory: sessionmaker[Session], settings: Settings, sources: tuple[str, ...] = ("cam1",)
) -> None:
    """Ad-hoc sources (as `vigil scan` makes them), then the settings applied as every process does."""
    with write_session(factory) as session:
        names = set(session.scalars(select(Source.name)))
        for name in sources:
            if name not in names:
                session.add(Source(name=name, path=f"/srv/{name}", target_names=None))
    apply_settings(factory, settings)


def add_media(
    session: Session,
    *,
    source: str = "cam1",
    mtime: datetime = T0,
    sha256: str | None = None,
    name: str = "clip.mp4",
) -> Media:
    src = session.scalar(select(Source).where(Source.name == source))
    assert src is not None
    count = len(session.scalars(select(Media.id)).all())
    media = Media(
        source_id=src.id,
        rel_path=f"{count}-{name}",
        path=f"/srv/{source}/{count}-{name}",
        kind="video",
        size_bytes=1000,
        mtime=mtime,
        sha256=sha256 if sha256 is not None else f"{count:064x}",
        status="done",
        duration_s=60.0,
    )
    session.add(media)
    session.flush()
    return media


def add_analysis(
    session: Session,
    media: Media,
    scores: dict[str, list[float]],
    *,
    window_s: float = 10.0,
    thumbnail: str | None = None,
    inherited: Collection[int] = (),
) -> Analysis:
    """An analysis of `media` with one detection per target per window (scores in window order); the
    windows in `inherited` are marked as the static-scene gate marks them."""
    targets = {t.name: t for t in session.scalars(select(Target))}
    analysis = Analysis(media_id=media.id, model_id="tiny", template_version=1, target_ids=[])
    session.add(analysis)
    session.flush()
    for name, values in scores.items():
        target = targets[name]
        for index, p in enumerate(values):
            session.add(
                Detection(
                    analysis_id=analysis.id,
                    media_id=media.id,
                    target_id=target.id,
                    window_index=index,
                    start_s=index * window_s,
                    end_s=(index + 1) * window_s,
                    p_yes=p,
                    matched=p >= target.threshold,
                    evidence=f"{name} in window {index}",
                    thumbnail_path=thumbnail,
                    inherited=index in inherited,
                )
            )
    session.flush()
    return analysis


def event_alerts(factory: sessionmaker[Session], event: str) -> list[Alert]:
    """The alerts fired on `event` (camera_offline, disk_pressure), oldest first, with their deliveries."""
    with factory() as session:
        return list(
            session.scalars(
                select(Alert)
                .where(Alert.event == event)
                .options(selectinload(Alert.deliveries))
                .order_by(Alert.id)
            )
        )


# ---------------------------------------------------------------- webhook receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: bytes = b"ok"


class Receiver:
    """A real HTTP server on loopback that records requests; `replies` (a function of the request count)
    decides each answer. It can be stopped (connection refused) and started again on the same port."""

    def __init__(
        self, reply: Callable[[int, Received], Reply] | None = None, *, host: str = "127.0.0.1"
    ) -> None:
        self.host = host  # the network-fault suite binds the test hosts' bridge address
        self.requests: list[Received] = []
        self.reply = reply or (lambda _n, _req: Reply())
        self.lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                req = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.lock:
                    receiver.requests.append(req)
                    n = len(receiver.requests)
                reply = receiver.reply(n, req)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]


@contextmanager
def receiving(reply: Callable[[int, Received], Reply] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(reply).start()
    try:
        yield receiver
    finally:
        receiver.stop()
