"""Rows and files for the review page's tests and bench: a real H.264 clip with analyses, detections,
thumbnails, an alert with deliveries; and bulk detections for the 100,000-row page."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import httpx
from sqlalchemy import insert, select

from tests.support.services import free_port
from vigil.config.settings import DatabaseSettings
from vigil.feedback.verdicts import record_verdict
from vigil.media.identity import sha256_file
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.schema import Alert, AlertRule, Analysis, Delivery, Detection, Media, Source, Target
from workers.testing.clips import write_clip_h264

T0 = datetime(2026, 11, 30, 21, 15, tzinfo=UTC)
WINDOW_S = 2.0


@dataclass
class Seeded:
    source_dir: Path
    thumbnails_dir: Path
    media_id: int
    clip: Path
    matched_ids: list[int]  # matched detections, newest first
    alert_id: int
    alert_detection_id: int


def _thumbnail(clip: Path, at_s: float, path: Path) -> str:
    """The clip's frame at `at_s`, as the worker would save a window's best frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(clip))
    capture.set(cv2.CAP_PROP_POS_MSEC, at_s * 1000)
    ok, frame = capture.read()
    capture.release()
    assert ok, f"no frame at {at_s} s in {clip}"
    cv2.imwrite(str(path), frame)
    return str(path)


def seed_review(url: str, root: Path, *, seconds: float = 12.0) -> Seeded:
    """One source with a real 12 s clip, analysed for two targets in 2 s windows, one alert."""
    source_dir, thumbs = root / "cam1", root / "data" / "thumbnails"
    source_dir.mkdir(parents=True, exist_ok=True)
    clip = write_clip_h264(source_dir / "driveway.mp4", seconds=seconds, fps=10, size=(320, 240), gop=10)
    os.utime(clip, (T0.timestamp(), T0.timestamp()))  # the row registers the file as it is (size, time, hash)
    engine = make_engine(DatabaseSettings(url=url))
    factory = session_factory(engine)
    windows = math.ceil(seconds / WINDOW_S)
    scores = {
        "person": [0.12, 0.31, 0.84, 0.93, 0.58, 0.22, 0.1][:windows],
        "van": [0.05, 0.07, 0.41, 0.72, 0.66, 0.18, 0.09][:windows],
    }
    with write_session(factory) as session:
        source = Source(name="cam1", path=str(source_dir))
        targets = {
            "person": Target(name="person", description="a person walking", threshold=0.5),
            "van": Target(name="van", description="a white delivery van", threshold=0.6),
        }
        session.add_all([source, *targets.values()])
        session.flush()
        media = Media(
            source_id=source.id, rel_path=clip.name, path=str(clip), kind="video",
            size_bytes=clip.stat().st_size, mtime=T0, sha256=sha256_file(clip), duration_s=seconds, fps=10.0,
            width=320, height=240, frame_count=int(seconds * 10), status="done",
            caption="A quiet driveway; a person walks up while a white van pulls in.",
        )  # fmt: skip
        session.add(media)
        session.flush()
        analysis = Analysis(
            media_id=media.id, model_id="tiny-llava_next_video", template_version=1,
            target_ids=[t.id for t in targets.values()], windows=windows, frames_decoded=windows * 8,
            decode_ms=84.0, model_ms=910.0, total_ms=1020.0, worker="gpu@host",
        )  # fmt: skip
        session.add(analysis)
        session.flush()
        rows: dict[tuple[str, int], Detection] = {}
        for name, values in scores.items():
            target = targets[name]
            for index, p in enumerate(values):
                matched = p >= target.threshold
                thumb = None
                if matched:
                    at = index * WINDOW_S + WINDOW_S / 2
                    thumb = _thumbnail(clip, at, thumbs / str(media.id) / f"w{index:04d}-t{target.id}.jpg")
                rows[name, index] = Detection(
                    analysis_id=analysis.id, media_id=media.id, target_id=target.id, window_index=index,
                    start_s=index * WINDOW_S, end_s=min(seconds, (index + 1) * WINDOW_S), p_yes=p,
                    matched=matched, thumbnail_path=thumb,
                    evidence=f"{'A person in a dark coat' if name == 'person' else 'A white van'} "
                    f"is visible near the gate." if matched else None,
                )  # fmt: skip
        session.add_all(rows.values())
        session.flush()
        rule = AlertRule(name="people-at-night", target_names=["person"], message="{target} at {source}",
                         channel_names=["ops", "phone"])  # fmt: skip
        session.add(rule)
        session.flush()
        hit = rows["person", 3]
        alert = Alert(
            dedup_key=f"r{rule.id}-m{media.id}-t{hit.target_id}", rule_id=rule.id, media_id=media.id,
            target_id=hit.target_id, detection_id=hit.id, source_id=source.id, score=hit.p_yes,
            start_s=hit.start_s, end_s=hit.end_s, severity="warning", message="person at cam1",
            fired_at=T0 + timedelta(seconds=30),
        )  # fmt: skip
        session.add(alert)
        session.flush()
        session.add_all([
            Delivery(alert_id=alert.id, channel="ops", idempotency_key=f"{alert.id}-ops", status="delivered",
                     attempts=1, delivered_at=T0 + timedelta(seconds=31)),
            Delivery(alert_id=alert.id, channel="phone", idempotency_key=f"{alert.id}-phone",
                     status="pending", attempts=2, last_error="HTTP 503 from receiver"),
        ])  # fmt: skip
        matched_ids = sorted((d.id for d in rows.values() if d.matched), reverse=True)
        seeded = Seeded(source_dir, thumbs, media.id, clip, matched_ids, alert.id, hit.id)
    engine.dispose()
    return seeded


def bulk_detections(url: str, count: int, *, per_media: int = 10, seed: int = 5) -> None:
    """`count` detections over `count / per_media` media rows of one source, a third of them matched."""
    rng = random.Random(seed)
    engine = make_engine(DatabaseSettings(url=url))
    factory = session_factory(engine)
    with write_session(factory) as session:
        source = session.scalar(select(Source).where(Source.name == "bulk"))
        if source is None:
            source = Source(name="bulk", path="/srv/bulk")
            session.add(source)
        target_ids = list(session.scalars(select(Target.id)))
        session.flush()
        media_rows = [
            {"source_id": source.id, "rel_path": f"bulk/{i:06d}.mp4", "path": f"/srv/bulk/bulk/{i:06d}.mp4",
             "kind": "video", "size_bytes": 1000, "mtime": T0 - timedelta(minutes=i), "duration_s": 20.0,
             "status": "done", "version": 1, "attempts": 0, "sends": 1,
             "created_at": T0, "updated_at": T0}
            for i in range(count // per_media)
        ]  # fmt: skip
        media_ids = list(session.scalars(insert(Media).returning(Media.id), media_rows))
        analysis_rows = [
            {"media_id": m, "model_id": "tiny", "template_version": 1, "params": {}, "target_ids": target_ids,
             "windows": per_media, "created_at": T0}
            for m in media_ids
        ]  # fmt: skip
        analysis_ids = list(session.scalars(insert(Analysis).returning(Analysis.id), analysis_rows))
        detections = []
        for media_id, analysis_id in zip(media_ids, analysis_ids, strict=True):
            for w in range(per_media):
                p = rng.random()
                detections.append(
                    {"analysis_id": analysis_id, "media_id": media_id,
                     "target_id": target_ids[w % len(target_ids)],
                     "window_index": w, "start_s": 2.0 * w, "end_s": 2.0 * w + 2, "p_yes": p,
                     "matched": p >= 0.66, "evidence": "bulk", "created_at": T0}
                )  # fmt: skip
        for chunk in range(0, len(detections), 5000):
            session.execute(insert(Detection), detections[chunk : chunk + 5000])
    engine.dispose()


def start_web(
    root: Path, db_url: str, *, env: dict[str, str] | None = None, argv: tuple[str, ...] = ("-m", "vigil.web")
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """A review page process (`python -m vigil.web`, or `argv` such as ("-m", "vigil", "web"))."""
    port = free_port()
    log = root / f"web-{port}.log"
    child_env = (
        {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        | {
            "VIGIL_DATABASE__URL": db_url,
            "VIGIL_STORAGE__DATA_DIR": str(root / "data"),
            "VIGIL_WEB__PORT": str(port),
            "VIGIL_LOG__FORMAT": "text",
        }
        | (env or {})
    )
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, *argv], cwd=root, env=child_env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    wait_answering(base, process, log)
    return process, base, log


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_answering(base: str, process: subprocess.Popen[bytes], log: Path, *, timeout: float = 60) -> None:
    """Until the server at `base` answers HTTP; fails with its log when it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"web exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(base + "/no-such-page", timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the review page did not answer in {timeout:.0f} s") from None
            time.sleep(0.2)


@dataclass
class Review:
    base: str
    db_url: str
    seeded: Seeded
    process: subprocess.Popen[bytes]
    log: Path


def judge_bulk(url: str, *, count: int = 500, seed: int = 2) -> None:
    rng = random.Random(seed)
    engine = make_engine(DatabaseSettings(url=url))
    with write_session(session_factory(engine)) as session:
        rows = session.execute(
            select(Detection.id, Detection.p_yes, Detection.matched)
            .join(Media, Media.id == Detection.media_id)
            .join(Source, Source.id == Media.source_id)
            .where(Source.name == "bulk")
            .limit(count * 3)
        ).all()
        for detection_id, score, matched in rng.sample(rows, count):
            present = score > 0.7 if rng.random() > 0.1 else score <= 0.7  # one verdict in ten disagrees
            verdict = "right" if present == matched else "wrong"
            record_verdict(session, detection_id=detection_id, verdict=verdict, origin="cli")
    engine.dispose()


def add_reanalysis(
    url: str, media_id: int, scores: dict[str, list[float]], *, thresholds: float = 0.5
) -> int:
    """A re-analysis as `vigil reanalyze --target NAME` stores it: a new analysis of only the named targets
    (created when new, as `vigil targets add` does), with their windows. Returns the analysis id."""
    engine = make_engine(DatabaseSettings(url=url))
    with write_session(session_factory(engine)) as session:
        targets = {t.name: t for t in session.scalars(select(Target))}
        for name in scores:
            if name not in targets:
                targets[name] = Target(name=name, description=f"a {name}", threshold=thresholds)
                session.add(targets[name])
        session.flush()
        analysis = Analysis(
            media_id=media_id, model_id="tiny-llava_next_video", template_version=1,
            target_ids=[targets[n].id for n in scores], windows=max(len(v) for v in scores.values()),
        )  # fmt: skip
        session.add(analysis)
        session.flush()
        for name, values in scores.items():
            target = targets[name]
            session.add_all(
                Detection(
                    analysis_id=analysis.id,
                    media_id=media_id,
                    target_id=target.id,
                    window_index=i,
                    start_s=i * WINDOW_S,
                    end_s=(i + 1) * WINDOW_S,
                    p_yes=p,
                    matched=p >= target.threshold,
                )  # fmt: skip
                for i, p in enumerate(values)
            )
        analysis_id = analysis.id
    engine.dispose()
    return analysis_id
