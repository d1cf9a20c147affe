"""Retention against real files registered by the real watcher: age (keep_days, keep_alerted_days), what is
never touched (unfinished rows, files changed since registration, symlinks out of the folder, temporary
names), and disk pressure on a real small filesystem (tmpfs with size=) filled until it is short."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from tests.support.alerting import add_analysis
from tests.support.volumes import tmpfs
from tests.support.watching import media_rows, wait_for
from vigil.alerts.delivery import deliver
from vigil.alerts.evaluation import evaluate_analysis
from vigil.config.settings import AlertSettings, RetentionSettings, RuleSettings, Settings, SourceSettings
from vigil.config.settings import TargetSettings as Target
from vigil.media.lifecycle import claim, finish_done
from vigil.media.retention import prune
from vigil.ops import metrics
from vigil.ops.contracts import DELIVER, TASK_QUEUES
from vigil.store.db import write_session
from vigil.store.schema import Alert, Detection, Feedback, Media, utcnow
from watcher.service import WatcherService

MiB = 2**20
DAY = 86400.0


def padded(clip: bytes, size: int, tag: str) -> bytes:
    """The clip followed by an ISO BMFF `free` box: a whole, valid MP4 of `size` bytes, unique by `tag`."""
    body = tag.encode().ljust(size - len(clip) - 8, b"\0")
    return clip + struct.pack(">I4s", len(body) + 8, b"free") + body


def put(folder: Path, name: str, clip: bytes, *, age_days: float, size: int = 0) -> Path:
    """Write a clip under a temporary name, date it, rename it in (as cameras and the recorder do)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(padded(clip, size or len(clip) + 8 + 64, name))
    moment = time.time() - age_days * DAY
    os.utime(part, (moment, moment))
    part.rename(path)
    return path


def analyse(
    factory: sessionmaker[Session], settings: Settings, media_id: int, score: float, *, verdict: str = ""
) -> Path:
    """The worker's end of an analysis, through the real lifecycle and rule evaluation: one window scored
    `score` for `person` (an alert when at least 0.5), a real thumbnail file, optionally a verdict."""
    got = claim(factory, media_id, lease_s=60)
    assert got is not None, [(m.rel_path, m.status, m.error) for m in media_rows(factory)]
    thumbnail = settings.storage.thumbnails_dir / str(media_id) / "w0.jpg"
    thumbnail.parent.mkdir(parents=True, exist_ok=True)
    thumbnail.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 2000 + b"\xff\xd9")
    with write_session(factory) as session:
        media = session.get_one(Media, media_id)
        analysis = add_analysis(session, media, {"person": [score]}, thumbnail=str(thumbnail))
        finish_done(session, got, caption=None)
        evaluate_analysis(session, analysis, settings=settings)
        if verdict:
            detection = session.scalars(select(Detection).where(Detection.media_id == media_id)).one()
            session.add(Feedback(detection_id=detection.id, verdict=verdict, origin="cli"))
    return thumbnail


def with_policy(settings: Settings, **retention: object) -> Settings:
    settings.targets = [Target(name="person", description="a person", threshold=0.5)]
    settings.alerts = AlertSettings(
        rules=[RuleSettings(name="people", targets=["person"], channels=["log"], cooldown_s=0)]
    )
    settings.retention = RetentionSettings(**retention)  # type: ignore[arg-type]
    return settings


def row_of(factory: sessionmaker[Session], rel_path: str) -> Media:
    return next(m for m in media_rows(factory) if m.rel_path == rel_path)


def test_age_prunes_plain_files_keeps_evidence_longer_and_dry_run_deletes_nothing(
    start_watcher: Callable[..., WatcherService], make_settings, factory, drop: Path, clip_bytes: bytes
) -> None:
    settings = with_policy(make_settings(), keep_days=3, keep_alerted_days=30)
    service = start_watcher(settings)
    ages = {"plain-old.mp4": 10, "alerted-old.mp4": 10, "judged-old.mp4": 10, "alerted-ancient.mp4": 40}
    ages |= {"plain-new.mp4": 1, "queued-old.mp4": 10}
    for name, age in ages.items():
        put(drop, name, clip_bytes, age_days=age)
    wait_for(lambda: len(media_rows(factory)) == len(ages))
    thumbs = {}
    for name, score, verdict in [
        ("plain-old.mp4", 0.1, ""),
        ("alerted-old.mp4", 0.9, ""),
        ("judged-old.mp4", 0.1, "right"),  # a verdict on a non-match is evidence too
        ("alerted-ancient.mp4", 0.9, ""),
        ("plain-new.mp4", 0.1, ""),
    ]:
        thumbs[name] = analyse(factory, settings, row_of(factory, name).id, score, verdict=verdict)

    dry = prune(factory, settings, dry_run=True)
    assert {(d.path, d.what) for d in dry.deletions} == {
        (str(drop / "plain-old.mp4"), "file"),
        (str(drop / "alerted-ancient.mp4"), "file"),
        (str(thumbs["plain-old.mp4"].parent), "thumbnails"),
        (str(thumbs["alerted-ancient.mp4"].parent), "thumbnails"),
    }
    assert all((drop / n).exists() for n in ages) and all(t.exists() for t in thumbs.values())
    assert all(m.pruned_at is None for m in media_rows(factory))

    report = service.prune_now()
    assert sorted(d.path for d in report.deletions if d.what == "file") == [
        str(drop / "alerted-ancient.mp4"),
        str(drop / "plain-old.mp4"),
    ]
    assert sorted(p.name for p in drop.iterdir()) == sorted(
        set(ages) - {"plain-old.mp4", "alerted-ancient.mp4"}
    )
    assert not thumbs["plain-old.mp4"].exists() and thumbs["alerted-old.mp4"].exists()
    plain, ancient = row_of(factory, "plain-old.mp4"), row_of(factory, "alerted-ancient.mp4")
    assert plain.pruned_at is not None and "past keep_days=3" in (plain.prune_reason or "")
    assert "past keep_alerted_days=30" in (ancient.prune_reason or "")
    assert row_of(factory, "alerted-old.mp4").pruned_at is None
    with factory() as session:  # the rows (detections, alerts) outlive the files; thumbnails are cleared
        detections = session.scalars(select(Detection).where(Detection.media_id == plain.id)).all()
        assert [d.thumbnail_path for d in detections] == [None]
    assert service.prune_now().deletions == []  # nothing left to do: a second pass deletes nothing


def test_never_deletes_unfinished_changed_or_outside_files(
    start_watcher: Callable[..., WatcherService],
    make_settings,
    factory,
    drop: Path,
    clip_bytes: bytes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = with_policy(make_settings(), keep_days=1)
    start_watcher(settings)
    for name in ("queued.mp4", "changed.mp4", "linked.mp4", "gone.mp4"):
        put(drop, name, clip_bytes, age_days=5)
    wait_for(lambda: len(media_rows(factory)) == 4)
    for name in ("changed.mp4", "linked.mp4", "gone.mp4"):
        analyse(factory, settings, row_of(factory, name).id, 0.1)
    # Rewritten in place since its analysis (a writer at work): its new version is the watcher's business.
    with (drop / "changed.mp4").open("ab") as handle:
        handle.write(b"more")
    # The row's file swapped for a symlink to a file outside the source folder: that file must survive.
    outside = tmp_path / "outside.mp4"
    shutil.copy2(drop / "linked.mp4", outside)
    (drop / "linked.mp4").unlink()
    (drop / "linked.mp4").symlink_to(outside)
    (drop / "gone.mp4").unlink()  # deleted by someone else: the row is marked, nothing deleted
    part = drop / "recording.mp4.part"  # a temporary name nobody registered
    part.write_bytes(clip_bytes)
    os.utime(part, (time.time() - 9 * DAY,) * 2)

    with caplog.at_level(logging.INFO, logger="vigil.media.deletion"):
        report = prune(factory, settings)
    gone_thumbnails = str(settings.storage.thumbnails_dir / str(row_of(factory, "gone.mp4").id))
    assert [(d.path, d.what) for d in report.deletions] == [
        (str(drop / "gone.mp4"), "gone"),
        (gone_thumbnails, "thumbnails"),  # thumbnails go with their file, never before it
    ]
    refused = {Path(path).name: why for _id, path, why in report.refused}
    assert "changed since it was registered" in refused["changed.mp4"]
    assert f"outside the source folder {drop.resolve()}" in refused["linked.mp4"]
    assert outside.exists() and part.exists() and (drop / "changed.mp4").exists()
    assert (drop / "queued.mp4").exists() and "queued.mp4" not in refused  # not finished: not a candidate
    assert row_of(factory, "gone.mp4").prune_reason.startswith("file already gone")  # type: ignore[union-attr]
    assert any("pruned media" in r.message and "gone.mp4" in r.message for r in caplog.records)


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 20 MiB filesystem (tmpfs with size=), unmounted at teardown."""
    with tmpfs(tmp_path / "volume", size="20m") as mount:
        yield mount


def fill(folder: Path, clip: bytes, names: list[str], *, size: int) -> None:
    for i, name in enumerate(names):  # the first is the oldest
        put(folder, name, clip, age_days=len(names) - i, size=size)


def test_disk_pressure_prunes_oldest_unalerted_first_then_reports_loudly(
    start_watcher: Callable[..., WatcherService],
    make_settings,
    make_enqueuer,
    factory,
    small_volume: Path,
    clip_bytes: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cams = small_volume / "cams"
    cams.mkdir()
    # 25% of 20 MiB = 5 MiB must stay free; the files fill the volume to about 2 MiB free.
    settings = make_settings(sources=[SourceSettings(name="cam", path=cams, min_free="25%")])
    settings = with_policy(settings, interval_s=0.3)
    settings.alerts.rules.append(
        RuleSettings(name="disk", on="disk_pressure", severity="critical", channels=["log"], cooldown_s=0)
    )
    names = [f"seg{i:02d}.mp4" for i in range(9)]
    fill(cams, clip_bytes, names, size=2 * MiB)
    assert shutil.disk_usage(small_volume).free < 5 * MiB
    start_watcher(settings)
    wait_for(lambda: len(media_rows(factory)) == len(names), timeout=30)
    half = names[:5]
    for name in names:
        if name not in half:
            continue
        score = 0.9 if name in ("seg00.mp4", "seg02.mp4") else 0.1  # the two oldest-but-one alerted
        analyse(factory, settings, row_of(factory, name).id, score)

    # The watcher's schedule: the oldest unalerted finished files go until 5 MiB are free.
    wait_for(lambda: shutil.disk_usage(small_volume).free >= 5 * MiB, timeout=15)
    left = sorted(p.name for p in cams.iterdir())
    assert left == [n for n in names if n not in ("seg01.mp4", "seg03.mp4")], left
    assert "pressure" in (row_of(factory, "seg01.mp4").prune_reason or "")
    assert row_of(factory, "seg00.mp4").pruned_at is None  # alerted: evidence, kept although oldest

    # Ask for more than the unalerted finished files can give: evidence and unfinished rows stay, and it
    # is said loudly on every pass (an error line, the metric) and once through the disk_pressure rule.
    unrelieved = metrics.DISK_PRESSURE_UNRELIEVED.labels(volume=str(small_volume))
    before = unrelieved._value.get()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        settings.watch.sources[0].min_free = "60%"

        def said(text: str) -> list[str]:
            return [
                r.getMessage() for r in caplog.records if text in r.getMessage() and "60%" in r.getMessage()
            ]

        wait_for(lambda: len(said("disk pressure NOT relieved")) >= 3, timeout=15)
    assert sorted(p.name for p in cams.iterdir()) == ["seg00.mp4", "seg02.mp4", *names[5:]]
    assert said("disk pressure NOT relieved")[0].startswith(f"disk pressure NOT relieved: {small_volume} has")
    assert unrelieved._value.get() >= before + 3
    (alert,) = pressure_alerts(factory, "60%")  # once for the episode, however many passes
    assert (alert.volume, alert.host, alert.severity) == (str(small_volume), socket.gethostname(), "critical")
    assert (
        alert.media_id is None
        and alert.payload["volume"]["free_bytes"] < alert.payload["volume"]["needed_bytes"]
    )
    (delivery,) = alert.deliveries
    assert delivery.channel == "log" and delivery.status == "pending"
    assert make_enqueuer(settings).waiting(TASK_QUEUES[DELIVER]), "the delivery was not handed to the queue"
    with caplog.at_level(logging.INFO):
        assert deliver(factory, delivery.id, settings=settings).status == "delivered"  # the cpu task's body
    assert said("ALERT critical: disk pressure on ") == [
        f"ALERT critical: {alert.message} ({delivery.idempotency_key})"
    ]


def pressure_alerts(factory: sessionmaker[Session], min_free: str) -> list[Alert]:
    with factory() as session:
        found = session.scalars(
            select(Alert).where(Alert.event == "disk_pressure").options(selectinload(Alert.deliveries))
        )
        return [a for a in found if a.payload["volume"]["min_free"] == min_free]


def test_prune_command_dry_run_then_for_real(
    start_watcher: Callable[..., WatcherService],
    make_settings,
    factory,
    drop: Path,
    clip_bytes: bytes,
    db_url: str,
    tmp_path: Path,
) -> None:
    settings = with_policy(make_settings(), keep_days=2)
    start_watcher(settings)
    put(drop, "old.mp4", clip_bytes, age_days=4)
    put(drop, "new.mp4", clip_bytes, age_days=1)
    wait_for(lambda: len(media_rows(factory)) == 2)
    for name in ("old.mp4", "new.mp4"):
        analyse(factory, settings, row_of(factory, name).id, 0.1)
    config = tmp_path / "vigil.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[storage]\ndata_dir = "{settings.storage.data_dir}"\n'
        f'[[watch.sources]]\nname = "drop"\npath = "{drop}"\n[retention]\nkeep_days = 2\n'
    )
    vigil = [sys.executable, "-m", "vigil", "-c", str(config), "prune"]
    dry = subprocess.run([*vigil, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert f"would delete media {row_of(factory, 'old.mp4').id} {drop / 'old.mp4'} [file" in dry.stdout
    assert "new.mp4" not in dry.stdout and (drop / "old.mp4").exists()
    done = subprocess.run(vigil, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "deleted media" in done.stdout and "past keep_days=2" in done.stdout
    assert not (drop / "old.mp4").exists() and (drop / "new.mp4").exists()
    assert row_of(factory, "old.mp4").pruned_at is not None
    assert utcnow() - row_of(factory, "old.mp4").pruned_at < timedelta(minutes=5)  # type: ignore[operator]
