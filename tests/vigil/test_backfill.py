"""Re-analysis marks only the named target and sends its media; scans queue files once; progress, status."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kombu import Connection
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from vigil.cli import cli
from vigil.config.settings import DatabaseSettings, Settings, SourceSettings
from vigil.errors import ConfigError
from vigil.media.backfill import enqueue_all, mark_for_reanalysis, parse_since, source_settings_for_scan
from vigil.media.progress import Progress, count_statuses, follow
from vigil.ops.celery_app import make_celery
from vigil.ops.contracts import GPU_QUEUE
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.schema import Media, Source, Target
from workers.testing.clips import write_clip_mp4v, write_image

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return f"sqla+sqlite:///{tmp_path / 'broker.db'}"


def drain(broker_url: str) -> list[int]:
    """Consume every analysis message from the embedded broker; the media ids they carry."""
    ids: list[int] = []
    with Connection(broker_url) as conn:
        queue = conn.SimpleQueue(GPU_QUEUE)
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                break
            _args, kwargs, _embed = message.decode()
            ids.append(kwargs["payload"]["media_id"])
            message.ack()
        queue.close()
    return sorted(ids)


def seed(factory: sessionmaker[Session]) -> dict[str, int]:
    with write_session(factory) as s:
        cam1 = Source(name="cam1", path="/cams/1")
        cam2 = Source(name="cam2", path="/cams/2", target_names=["person"])  # never asked about vans
        van, person = (
            Target(name="van", description="a white van"),
            Target(name="person", description="a person"),
        )
        s.add_all([cam1, cam2, van, person])
        rows = {
            "done_new": Media(source=cam1, status="done", mtime=NOW - timedelta(hours=1)),
            "failed_new": Media(
                source=cam1, status="failed", mtime=NOW - timedelta(hours=5), attempts=3, error="worker lost"
            ),
            "done_old": Media(source=cam1, status="done", mtime=NOW - timedelta(days=10)),
            "queued": Media(source=cam1, status="queued", mtime=NOW - timedelta(hours=1)),
            "skipped": Media(source=cam1, status="skipped", mtime=NOW - timedelta(hours=1)),
            "other_source": Media(source=cam2, status="done", mtime=NOW - timedelta(hours=1)),
        }
        for name, media in rows.items():
            media.rel_path, media.path, media.kind, media.size_bytes = name, f"/x/{name}", "video", 1
        # Failed at registration: no attempt began, its reason is the probe's.
        rows["unreadable"] = Media(
            source=cam1,
            status="failed",
            mtime=NOW - timedelta(hours=1),
            error="not a readable video container",
        )
        unreadable = rows["unreadable"]
        unreadable.rel_path, unreadable.path, unreadable.kind, unreadable.size_bytes = "u", "/x/u", "video", 1
        s.add_all(rows.values())
        s.flush()
        return {**{k: m.id for k, m in rows.items()}, "van": van.id, "person": person.id}


def rows_by_id(factory: sessionmaker[Session]) -> dict[int, Media]:
    with factory() as s:
        return {m.id: m for m in s.scalars(select(Media))}


def test_reanalysis_marks_only_that_targets_analysed_media(factory: sessionmaker[Session]) -> None:
    ids = seed(factory)
    marked = mark_for_reanalysis(factory, target_name="van", since=NOW - timedelta(days=2))
    assert marked.target_id == ids["van"]
    assert sorted(marked.media_ids) == sorted([ids["done_new"], ids["failed_new"]])
    rows = rows_by_id(factory)
    for name in ("done_new", "failed_new"):
        row = rows[ids[name]]
        assert (row.status, row.pending_target_ids, row.attempts, row.error) == (
            "queued",
            [ids["van"]],
            0,
            None,
        )
    for name, status in [
        ("done_old", "done"),
        ("queued", "queued"),
        ("skipped", "skipped"),
        ("other_source", "done"),
        ("unreadable", "failed"),
    ]:
        assert (rows[ids[name]].status, rows[ids[name]].pending_target_ids) == (status, None)
    # Its real error is kept: a worker would have replaced it with "window [0.0, 0.0) s holds no frame".
    assert rows[ids["unreadable"]].error == "not a readable video container"


def test_reanalysis_refuses_what_cannot_be_asked(factory: sessionmaker[Session]) -> None:
    seed(factory)
    with pytest.raises(ConfigError, match="no target named 'truck'"):
        mark_for_reanalysis(factory, target_name="truck")
    with pytest.raises(ConfigError, match="not asked about at source cam2"):
        mark_for_reanalysis(factory, target_name="van", source_name="cam2")
    with write_session(factory) as s:
        s.execute(update(Target).where(Target.name == "van").values(enabled=False))
    with pytest.raises(ConfigError, match="disabled"):
        mark_for_reanalysis(factory, target_name="van")


def test_marked_media_are_sent_once_each(factory: sessionmaker[Session], broker_url: str) -> None:
    ids = seed(factory)
    marked = mark_for_reanalysis(factory, target_name="person")
    enqueuer = Enqueuer(make_celery(Settings(broker={"url": broker_url})), factory)
    assert enqueue_all(enqueuer, marked.media_ids) == len(marked.media_ids) == 4
    assert drain(broker_url) == sorted(marked.media_ids)
    rows = rows_by_id(factory)
    assert {rows[i].sends for i in marked.media_ids} == {1}
    assert rows[ids["other_source"]].pending_target_ids == [ids["person"]]


def test_reanalyze_command(sqlite_url: str, factory: sessionmaker[Session], broker_url: str) -> None:
    ids = seed(factory)
    env = {"VIGIL_DATABASE__URL": sqlite_url, "VIGIL_BROKER__URL": broker_url}
    result = CliRunner().invoke(cli, ["reanalyze", "--target", "van", "--source", "cam1"], env=env)
    assert result.exit_code == 0, result.output
    expected = sorted([ids["done_new"], ids["failed_new"], ids["done_old"]])
    assert "re-analysing 3 file(s) for target van (3 sent)" in result.stderr
    assert "reanalyze van: 3 found, 3 queued, 0 done, 0 failed" in result.stderr
    assert drain(broker_url) == expected
    again = CliRunner().invoke(cli, ["reanalyze", "--target", "van"], env=env)
    assert again.exit_code == 0 and "nothing to re-analyse" in again.stderr  # all still queued
    bad = CliRunner().invoke(cli, ["reanalyze", "--target", "van", "--since", "yesterday"], env=env)
    assert bad.exit_code == 2 and "--since 'yesterday'" in bad.stderr


def test_parse_since() -> None:
    assert parse_since("2d", now=NOW) == NOW - timedelta(days=2)
    assert parse_since("90m", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_since("1w", now=NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-11-20", now=NOW) == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_since("2026-11-20T10:00+02:00", now=NOW) == datetime(2026, 11, 20, 8, tzinfo=UTC)


# --- progress -------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_on_a_pipe_are_periodic_with_rate_and_eta() -> None:
    from collections import Counter

    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream=stream, label="scan cam1", interactive=False, interval_s=10, clock=clock)
    progress.update(found=10, counts=Counter({"queued": 10, "sent": 10}))
    clock.now = 5
    progress.update(counts=Counter({"queued": 8, "done": 2, "sent": 10}))  # within the interval: no line
    clock.now = 10
    progress.update(counts=Counter({"queued": 5, "done": 4, "failed": 1, "sent": 10}))
    progress.close()
    assert stream.getvalue().splitlines() == [
        "scan cam1: 10 found, 10 queued, 0 done, 0 failed, 0.00/s, ETA ?",
        "scan cam1: 10 found, 10 queued, 4 done, 1 failed, 0.50/s, ETA 10s",
        "scan cam1: 10 found, 10 queued, 4 done, 1 failed, 0.50/s, ETA 10s",
    ]


def test_progress_on_a_terminal_redraws_one_line() -> None:
    from collections import Counter

    stream = io.StringIO()
    progress = Progress(stream=stream, label="x", interactive=True, clock=Clock())
    progress.update(found=1, counts=Counter({"queued": 1, "sent": 1}))
    progress.update(counts=Counter({"done": 1, "sent": 1}))
    progress.close()
    assert stream.getvalue().count("\r\x1b[K") == 3 and stream.getvalue().endswith("\n")
    assert stream.getvalue().count("\n") == 1


def test_follow_waits_until_no_row_is_queued_or_running(factory: sessionmaker[Session]) -> None:
    ids = seed(factory)
    marked = mark_for_reanalysis(factory, target_name="van")

    def worker() -> None:  # stands in for the analysis worker, which the lead's tests cover
        for media_id in marked.media_ids:
            with write_session(factory) as s:
                s.execute(update(Media).where(Media.id == media_id).values(status="done"))

    progress = Progress(stream=io.StringIO(), label="w", interactive=False)
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            threading.Thread(target=worker).start()
        threading.Event().wait(0.05)

    assert follow(factory, marked.media_ids, progress, poll_s=0.01, sleep=sleep, timeout_s=30)
    assert count_statuses(factory, marked.media_ids)["done"] == len(marked.media_ids)
    assert ids["queued"] not in marked.media_ids


# --- scan -----------------------------------------------------------------------------------------------


@pytest.fixture
def camera_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cam3"
    (folder / "day1").mkdir(parents=True)
    write_clip_mp4v(folder / "day1" / "a.mp4", seconds=1, fps=5, size=(64, 48))
    write_clip_mp4v(folder / "b.mp4", seconds=1, fps=5, size=(64, 48), pattern="noise")
    write_image(folder / "still.png", size=(32, 24))
    (folder / "upload.mp4.part").write_bytes(b"half a file")
    (folder / "notes.txt").write_text("not media")
    (folder / "broken.mp4").write_text("not a video")
    return folder


def scan(env: dict[str, str], folder: Path, *extra: str) -> Any:
    return CliRunner().invoke(cli, ["scan", str(folder), *extra], env=env)


def test_scan_queues_each_file_once(
    sqlite_url: str, factory: sessionmaker[Session], broker_url: str, camera_folder: Path
) -> None:
    env = {"VIGIL_DATABASE__URL": sqlite_url, "VIGIL_BROKER__URL": broker_url}
    first = scan(env, camera_folder, "--poll", "0.05")
    assert first.exit_code == 0, first.output
    assert "scanned" in first.stderr and "4 found, 3 queued, 0 already known, 1 unreadable" in first.stderr
    assert "scan cam3: 4 found, 3 queued, 0 done, 1 failed" in first.stderr
    with factory() as s:
        rows = {m.rel_path: m for m in s.scalars(select(Media))}
    assert sorted(rows) == ["b.mp4", "broken.mp4", "day1/a.mp4", "still.png"]
    assert rows["broken.mp4"].status == "failed" and rows["still.png"].kind == "image"
    assert drain(broker_url) == sorted(m.id for m in rows.values() if m.status == "queued")

    second = scan(env, camera_folder)
    assert second.exit_code == 0, second.output
    assert "4 found, 0 queued, 4 already known" in second.stderr
    assert drain(broker_url) == []
    with factory() as s:
        assert s.scalar(select(Media.id).order_by(Media.id.desc()).limit(1)) == max(
            m.id for m in rows.values()
        )
        assert {m.sends for m in s.scalars(select(Media)) if m.status == "queued"} == {1}


def test_scan_uses_a_configured_sources_rules_and_refuses_name_clashes(
    tmp_path: Path, camera_folder: Path
) -> None:
    conf = SourceSettings(name="cams", path=camera_folder, include=["*.png"])
    assert source_settings_for_scan(camera_folder, None, [conf]) is conf
    assert source_settings_for_scan(None, "cams", [conf]) is conf
    with pytest.raises(ConfigError, match="is the folder"):
        source_settings_for_scan(tmp_path, "cams", [conf])
    with pytest.raises(ConfigError, match=r"^nothing to scan: give a folder, or --source NAME .*\(cams\)$"):
        source_settings_for_scan(None, None, [conf])  # it said "no configured source named None"
    adhoc = source_settings_for_scan(camera_folder / "day1", None, [conf])
    assert (adhoc.name, adhoc.path) == ("day1", (camera_folder / "day1").resolve())


def test_status_command(sqlite_url: str, factory: sessionmaker[Session], broker_url: str) -> None:
    ids = seed(factory)
    env = {"VIGIL_DATABASE__URL": sqlite_url, "VIGIL_BROKER__URL": broker_url}
    marked = mark_for_reanalysis(factory, target_name="person")
    enqueue_all(Enqueuer(make_celery(Settings(broker={"url": broker_url})), factory), marked.media_ids[:2])
    result = CliRunner().invoke(cli, ["status"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "media: 5 queued, 0 running, 0 done, 1 failed, 1 skipped, 0 superseded"
    assert lines[1].startswith("queue: 5 queued (oldest queued ")
    assert lines[2] == "broker queue gpu: 2 message(s)"
    assert lines[3] == "alerts: 0 waiting for 0 delivery(ies)"
    assert ids["queued"]
