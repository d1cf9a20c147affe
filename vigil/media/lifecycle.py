"""Every status change of a media row, in one place (as `vigil.alerts.delivery` is for deliveries).

```
 register ──► queued ──claim──► running ──finish──► done
    │            ▲                 │ ├──fail──────► failed
    │            │                 │ ├──supersede─► superseded  (the file changed since it was registered)
    │            │                 │ └──give up───► failed   (attempts used up, one comparison: `exhausted`)
    │            └──release────────┤                          (a retry; the worker keeps the claim token)
    │            └──expire lease───┘                          (the worker was lost; reconciler)
    │  done/failed ──requeue for a target──► queued           (re-analysis, backfill)
    └──► failed (unreadable, not probed) · skipped (same content as an earlier row)
```

Only the holder of the current claim token may change a running row; a stale holder gets `LostClaim`.
Torch-free: the worker, the reconciler, backfill and registration all call it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vigil.errors import MediaError
from vigil.formats.probe import MediaInfo
from vigil.ops.contracts import TargetSpec
from vigil.store.db import write_session
from vigil.store.schema import Media, MediaStatus, Source, Target, utcnow

log = logging.getLogger(__name__)


def reanalyzable() -> ColumnElement[bool]:
    """Rows a target may be asked about again: done, or failed by an attempt; never a file that failed at
    registration (no attempt began): a worker could only replace its real reason with a decode error."""
    return (Media.status == MediaStatus.DONE) | ((Media.status == MediaStatus.FAILED) & (Media.attempts > 0))


CHUNK = 500


class LostClaim(Exception):
    """Another worker took this media over (our lease expired); our results are discarded."""


def exhausted(attempts: int, *, max_attempts: int) -> bool:
    """True when a row that has begun `attempts` attempts may not begin another: the one give-up rule."""
    return attempts >= max_attempts


# --- registration ------------------------------------------------------------------------------------------


def set_registered(
    session: Session,
    media: Media,
    info: MediaInfo | None,
    problem: MediaError | None,
    *,
    skip_duplicates: bool,
) -> None:
    """A new row's state: `queued`, `failed` (why it can never be analysed) or `skipped` (a duplicate).

    One clock reading is its registration time and, when it ends here, its finish: the insert's own
    default came later, so a failed row read as finished before it was registered."""
    now = utcnow()
    media.created_at = now
    apply_probe(media, info, problem, now=now)
    if media.status == MediaStatus.QUEUED and skip_duplicates:
        skip_if_duplicate(session, media, now=now)


def apply_probe(media: Media, info: MediaInfo | None, problem: MediaError | None, *, now: datetime) -> None:
    """`queued` with the probe's geometry, or `failed` with the reason the file can never be analysed."""
    if problem is not None or info is None:
        media.status = MediaStatus.FAILED
        media.error = problem.reason if problem is not None else "not probed"
        media.finished_at = now
        return
    media.status = MediaStatus.QUEUED
    media.kind = info.kind
    media.width, media.height = info.width, info.height
    media.fps, media.frame_count, media.duration_s = info.fps, info.frame_count, info.duration_s


def skip_if_duplicate(session: Session, media: Media, *, now: datetime) -> None:
    """A queued new row whose content an earlier (not failed) row already has is `skipped`, pointing at it."""
    original = session.scalar(
        select(Media)
        .where(
            Media.sha256 == media.sha256,
            Media.status.not_in([MediaStatus.FAILED, MediaStatus.SUPERSEDED]),
        )
        .order_by(Media.id)
        .limit(1)
    )
    if original is not None:
        media.status = MediaStatus.SKIPPED
        media.duplicate_of_id = original.id
        media.error = f"same content as media {original.id}"
        media.finished_at = now


# --- claim and lease ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """What the row says the file was (the worker checks the file on disk is still that version)."""

    size_bytes: int
    mtime: datetime
    sha256: str | None


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
    static_gate: float = 0.0  # the media's source's gate threshold (0: off)


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
        gate = session.get_one(Source, media.source_id).static_gate
        return Claim(
            media_id, token, Path(media.path), info, targets, media.attempts, media.error, registered, gate
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


def renew_lease(factory: sessionmaker[Session], claim: Claim, *, lease_s: float) -> bool:
    """Extend the claim's lease; False when the claim is no longer held."""
    with write_session(factory) as session:
        result = session.execute(
            update(Media)
            .where(Media.id == claim.media_id, Media.claim_token == claim.token)
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


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
        # A renewal in flight ends within the database's network bound (database.network_timeout_s); the
        # analysis does not wait longer than a lease for it (the thread is a daemon, its answer unused).
        self._thread.join(timeout=self.lease_s)

    def _run(self) -> None:
        renewed = time.monotonic()
        warned = False
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not renew_lease(self.factory, self.claim, lease_s=self.lease_s):
                    log.warning("media %d: claim lost to another worker", self.claim.media_id)
                    self.lost.set()
                    return
                renewed, warned = time.monotonic(), False
            except Exception as exc:  # the database may be briefly down; the next beat retries
                log.warning("media %d: lease renewal failed: %s", self.claim.media_id, exc)
                silent = time.monotonic() - renewed
                if silent > self.lease_s and not warned:
                    warned = True
                    log.warning(
                        "media %d: no lease renewal for %.0f s (work.lease_s = %g): another worker may take "
                        "the file over, and this attempt's results then count for nothing",
                        self.claim.media_id,
                        silent,
                        self.lease_s,
                    )


# --- the end of an attempt ---------------------------------------------------------------------------------


def finish_done(session: Session, claim: Claim, *, caption: str | None) -> None:
    """`done`, inside the caller's results transaction (raises `LostClaim` when the claim is gone)."""
    _finish(session, claim, status=MediaStatus.DONE, caption=caption, error=None)


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


def give_up_if_exhausted(factory: sessionmaker[Session], claim: Claim, *, max_attempts: int) -> bool:
    """Fail a claim that began one attempt more than allowed (the attempts before it used them all)."""
    if not exhausted(claim.attempts - 1, max_attempts=max_attempts):
        return False
    last = f": {claim.last_error}" if claim.last_error else ""
    mark_failed(factory, claim, f"gave up after {max_attempts} attempts{last}")
    return True


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


# --- the reconciler and re-analysis ------------------------------------------------------------------------


def expire_leases(
    factory: sessionmaker[Session], *, max_attempts: int, batch: int
) -> tuple[list[int], list[int]]:
    """Running rows whose lease ran out (their worker died): queued again, or failed once their attempts
    are used up. Returns (ids queued again, ids given up)."""
    now = utcnow()
    with write_session(factory) as session:
        rows = session.execute(
            select(Media.id, Media.attempts)
            .where(Media.status == MediaStatus.RUNNING, Media.lease_until < now)
            .limit(batch)
        ).all()
        requeue: list[int] = []
        give_up: list[int] = []
        for row in rows:
            (give_up if exhausted(row.attempts, max_attempts=max_attempts) else requeue).append(row.id)
        if requeue:
            session.execute(
                update(Media)
                .where(Media.id.in_(requeue), Media.status == MediaStatus.RUNNING)
                .values(status=MediaStatus.QUEUED, claim_token=None, lease_until=None, enqueued_at=None)
            )
        if give_up:
            session.execute(
                update(Media)
                .where(Media.id.in_(give_up), Media.status == MediaStatus.RUNNING)
                .values(
                    status=MediaStatus.FAILED,
                    claim_token=None,
                    lease_until=None,
                    finished_at=now,
                    error=f"gave up after {max_attempts} attempts: the worker was lost each time",
                )
            )
    for media_id in give_up:
        log.warning("media %d failed: worker lost %d times", media_id, max_attempts)
    return requeue, give_up


def requeue_for_target(session: Session, media_ids: Sequence[int], target_id: int, *, now: datetime) -> None:
    """Done/failed rows back to `queued`, asking only `target_id`, with a fresh attempt count; inside the
    caller's transaction. Rows in any other status, or never probed, are left alone (`reanalyzable`)."""
    for start in range(0, len(media_ids), CHUNK):
        session.execute(
            update(Media)
            .where(Media.id.in_(media_ids[start : start + CHUNK]), reanalyzable())
            .values(
                status=MediaStatus.QUEUED,
                pending_target_ids=[target_id],
                attempts=0,
                error=None,
                claim_token=None,
                lease_until=None,
                started_at=None,
                finished_at=None,
                # Sent right after commit; if that send fails, the reconciler resends it later.
                enqueued_at=now,
            ),
            execution_options={"synchronize_session": False},
        )
