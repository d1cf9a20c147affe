"""Analysing one media row: claim it, keep its lease alive, recognise, store everything in one commit.

Plain functions over a session factory and a recogniser, so tests call them without Celery. Exactly-once
results come from the claim token: only the worker holding the current claim may write results, and the
results, the `done` status and the alerts they fire are one transaction.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vigil.db import write_session
from vigil.errors import MediaError
from vigil.media import MediaInfo
from vigil.schema import Analysis, Detection, Media, MediaStatus, Source, Target, utcnow
from workers.version import FileRead, Registered

log = logging.getLogger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TargetSpec:
    id: int
    name: str
    description: str
    threshold: float
    # Stored reference images (file names under <data_dir>/references, "<sha256><suffix>"), in order.
    images: tuple[str, ...] = ()


@dataclass
class WindowResult:
    target_id: int
    window_index: int
    start_s: float
    end_s: float
    p_yes: float
    matched: bool
    evidence: str | None = None
    thumbnail_path: str | None = None


@dataclass
class Recognition:
    results: list[WindowResult]
    windows: int
    frames_decoded: int
    decode_ms: float
    model_ms: float
    params: dict[str, object] = field(default_factory=dict)
    caption: str | None = None


class Recognizer(Protocol):
    model_id: str
    prompt_version: int

    def recognize(
        self,
        path: Path,
        info: MediaInfo,
        targets: list[TargetSpec],
        *,
        media_id: int,
        frames_per_window: int | None = None,
    ) -> Recognition: ...


# Called inside the results transaction; returns ids of delivery rows to send after commit.
AfterResults = Callable[[Session, Analysis], list[int]]


class LostClaim(Exception):
    """Another worker took this media over (our lease expired); our results are discarded."""


@dataclass(frozen=True)
class Claim:
    media_id: int
    token: str
    path: Path
    info: MediaInfo
    targets: list[TargetSpec]
    attempts: int
    last_error: str | None
    registered: Registered


def claim(factory: sessionmaker[Session], media_id: int, *, lease_s: float) -> Claim | None:
    """Take the row if it is queued (or running under an expired lease). None: nothing to do here."""
    token = str(uuid.uuid4())
    now = utcnow()
    with write_session(factory) as session:
        result = session.execute(
            update(Media)
            .where(
                Media.id == media_id,
                or_(
                    Media.status == MediaStatus.QUEUED,
                    (Media.status == MediaStatus.RUNNING) & (Media.lease_until < now),
                ),
            )
            .values(
                status=MediaStatus.RUNNING,
                claim_token=token,
                lease_until=now + timedelta(seconds=lease_s),
                attempts=Media.attempts + 1,
                started_at=now,
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        media = session.get_one(Media, media_id)
        targets = _targets_for(session, media)
        info = MediaInfo(
            kind=media.kind,  # type: ignore[arg-type]
            width=media.width or 0,
            height=media.height or 0,
            fps=media.fps or 0.0,
            frame_count=media.frame_count or 0,
            duration_s=media.duration_s or 0.0,
            codec=None,
        )
        registered = Registered(media.size_bytes, media.mtime, media.sha256)
        return Claim(
            media_id, token, Path(media.path), info, targets, media.attempts, media.error, registered
        )


def _targets_for(session: Session, media: Media) -> list[TargetSpec]:
    query = select(Target).where(Target.enabled.is_(True)).order_by(Target.id)
    if media.pending_target_ids is not None:
        query = query.where(Target.id.in_(media.pending_target_ids))
    else:
        source = session.get_one(Source, media.source_id)
        if source.target_names is not None:
            query = query.where(Target.name.in_(source.target_names))
    return [
        TargetSpec(t.id, t.name, t.description, t.threshold, tuple(i["file"] for i in t.images or []))
        for t in session.scalars(query)
    ]


class LeaseKeeper:
    """Renews the claim's lease in the background while the analysis runs."""

    def __init__(self, factory: sessionmaker[Session], claim: Claim, *, lease_s: float) -> None:
        self.factory, self.claim, self.lease_s = factory, claim, lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.media_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with write_session(self.factory) as session:
                    result = session.execute(
                        update(Media)
                        .where(Media.id == self.claim.media_id, Media.claim_token == self.claim.token)
                        .values(lease_until=utcnow() + timedelta(seconds=self.lease_s))
                    )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    log.warning("media %d: claim lost to another worker", self.claim.media_id)
                    self.lost.set()
                    return
            except Exception as exc:  # the database may be briefly down; the next beat retries
                log.warning("media %d: lease renewal failed: %s", self.claim.media_id, exc)


def store_results(
    factory: sessionmaker[Session],
    claim: Claim,
    recognition: Recognition,
    *,
    model_id: str,
    prompt_version: int,
    total_ms: float,
    read: FileRead | None = None,
    after_results: AfterResults | None = None,
) -> tuple[int, list[int]]:
    """Write the analysis, its detections and `done` in one transaction. Returns (analysis id, deliveries)."""
    with write_session(factory) as session:
        _finish(session, claim, status=MediaStatus.DONE, caption=recognition.caption, error=None)
        analysis = Analysis(
            media_id=claim.media_id,
            model_id=model_id,
            prompt_version=prompt_version,
            params=dict(recognition.params),
            target_ids=[t.id for t in claim.targets],
            windows=recognition.windows,
            frames_decoded=recognition.frames_decoded,
            decode_ms=recognition.decode_ms,
            model_ms=recognition.model_ms,
            total_ms=total_ms,
            worker=WORKER_NAME,
            size_bytes=read.size_bytes if read else None,
            file_mtime=read.mtime if read else None,
        )
        session.add(analysis)
        session.flush()
        session.add_all(
            Detection(analysis_id=analysis.id, media_id=claim.media_id, **vars(result))
            for result in recognition.results
        )
        session.flush()
        deliveries = after_results(session, analysis) if after_results else []
        return analysis.id, deliveries


def mark_failed(factory: sessionmaker[Session], claim: Claim, error: MediaError | str) -> None:
    reason = error.reason if isinstance(error, MediaError) else error
    with write_session(factory) as session:
        _finish(session, claim, status=MediaStatus.FAILED, error=reason)
    log.warning("media %d failed: %s: %s", claim.media_id, claim.path, reason)


def mark_superseded(factory: sessionmaker[Session], claim: Claim, reason: str) -> None:
    """The file changed after registration: this version ends unanalysed (and fires nothing)."""
    with write_session(factory) as session:
        _finish(session, claim, status=MediaStatus.SUPERSEDED, error=reason)
    log.info("media %d superseded: %s: %s (the next version is analysed)", claim.media_id, claim.path, reason)


def release(factory: sessionmaker[Session], claim: Claim, *, error: str, count_attempt: bool = True) -> None:
    """Give the row back to the queue for a retry; the attempt is not counted when it was not its fault."""
    values: dict[str, object] = {
        "status": MediaStatus.QUEUED,
        "claim_token": None,
        "lease_until": None,
        "error": error,
    }
    if not count_attempt:
        values["attempts"] = Media.attempts - 1
    with write_session(factory) as session:
        session.execute(
            update(Media).where(Media.id == claim.media_id, Media.claim_token == claim.token).values(**values)
        )


def _finish(session: Session, claim: Claim, *, status: MediaStatus, **values: object) -> None:
    result = session.execute(
        update(Media)
        .where(Media.id == claim.media_id, Media.claim_token == claim.token)
        .values(
            status=status,
            claim_token=None,
            lease_until=None,
            finished_at=utcnow(),
            pending_target_ids=None,
            **values,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LostClaim(f"media {claim.media_id}: claim {claim.token} is no longer held")
