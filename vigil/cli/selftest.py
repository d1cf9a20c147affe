"""`vigil selftest`: an installation check on any machine, no download needed.

Builds a tiny randomly initialised model of a real architecture in a temporary folder, writes a short
clip, and runs it through the real pipeline (probe, registration, claim, decode, scoring, storage) into a
temporary database. Random weights score near 0.5: this proves the plumbing, not the model.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from vigil.cli.context import AppContext, pass_app
from vigil.errors import VigilError


@click.command("selftest")
@click.option(
    "--family",
    type=click.Choice(["llava_next_video", "qwen2_5_vl", "qwen2_vl", "smolvlm2"]),
    default="llava_next_video",
    show_default=True,
)
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the files here.")
@pass_app
def selftest_command(app: AppContext, family: str, keep: Path | None) -> None:
    """Check the installation end to end with a tiny model (takes a few seconds)."""
    workdir = keep or Path(tempfile.mkdtemp(prefix="vigil-selftest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    lines = run_selftest(workdir, family=family)
    for line in lines:
        click.echo(line)
    click.echo(f"selftest passed in {time.perf_counter() - began:.1f} s ({workdir})")


def run_selftest(workdir: Path, *, family: str) -> list[str]:
    import torch
    from transformers.utils import logging as hf_logging

    from vigil.config.settings import Settings, TargetSettings
    from vigil.formats.probe import probe
    from vigil.media.registry import ensure_source, register_file, sync_targets
    from vigil.ops.contracts import AnalyzePayload
    from vigil.store.db import make_engine, session_factory, write_session
    from vigil.store.migrate import upgrade
    from vigil.store.schema import Detection, Media
    from workers.analysis.runner import analyze_media
    from workers.analysis.runtime import WorkerRuntime
    from workers.testing.clips import write_clip_mp4v
    from workers.testing.models import build_tiny_model

    hf_logging.disable_progress_bar()
    model_dir = build_tiny_model(family, workdir / f"tiny-{family}")
    clip_dir = workdir / "drop"
    clip_dir.mkdir(exist_ok=True)
    clip = write_clip_mp4v(clip_dir / "selftest.mp4", seconds=2, fps=10, size=(160, 120))
    db_url = f"sqlite:///{workdir / 'selftest.db'}"
    upgrade(db_url)
    settings = Settings.model_validate(
        {
            "database": {"url": db_url},
            "broker": {"url": f"sqla+sqlite:///{workdir / 'broker.db'}"},
            "model": {"id": str(model_dir), "frames_per_window": 4, "window_s": 1.0, "evidence": True},
            "storage": {"data_dir": workdir / "data"},
            "targets": [TargetSettings(name="person", description="a person walking", threshold=0.0)],
        }
    )
    factory = session_factory(make_engine(settings.database))
    with write_session(factory) as session:
        sync_targets(session, settings.targets, references_dir=settings.storage.references_dir)
        source_id = ensure_source(session, "selftest", clip_dir).id
    registration = register_file(factory, source_id=source_id, root=clip_dir, path=clip, info=probe(clip))
    outcome = analyze_media(WorkerRuntime(settings), AnalyzePayload(media_id=registration.media_id))
    with factory() as session:
        media = session.get_one(Media, registration.media_id)
        detections = session.query(Detection).filter_by(media_id=media.id).order_by(Detection.start_s).all()
    if outcome.status != "done" or not detections:
        raise VigilError(f"selftest failed: media {media.status}: {media.error or outcome.status}")
    lines = [f"torch {torch.__version__}, model family {family} (random weights), media {media.status}"]
    for d in detections:
        lines.append(
            f"  window {d.start_s:4.1f}-{d.end_s:4.1f} s  p_yes {d.p_yes:.3f}"
            f"  thumbnail {bool(d.thumbnail_path)}"
        )
    return lines


def register(cli: click.Group) -> None:
    cli.add_command(selftest_command)
