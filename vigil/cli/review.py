"""`vigil web`, `vigil feedback`, `vigil calibrate`: the review page, verdicts, and thresholds fitted
from them."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click
from sqlalchemy import func, select

from vigil.cli.context import AppContext, pass_app
from vigil.errors import ConfigError
from vigil.feedback.calibration import DEFAULT_PRECISION, Fit, Labelled, fit_threshold, histogram
from vigil.feedback.verdicts import (
    apply_threshold,
    detection_to_judge,
    labels_from_feedback,
    record_verdict,
    target_by_name,
)
from vigil.store.db import write_session
from vigil.store.schema import Analysis, Detection, Media

LABEL_WORDS = {"1": True, "yes": True, "true": True, "present": True, "right": True,
               "0": False, "no": False, "false": False, "absent": False, "wrong": False}  # fmt: skip


@click.command("web")
@click.option("--host", help="Address to bind (default web.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default web.port, 8765).")
@pass_app
def web_command(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve the review page: timeline, media, targets. Another address than loopback needs web.password."""
    from vigil.web.__main__ import run_web

    app.override("web", host=host, port=port)
    app.require_migrated()
    sys.exit(run_web(app.settings, port_hint=", or pass --port"))


@click.command("feedback")
@click.argument("media_id", type=int)
@click.argument("target")
@click.argument("verdict", type=click.Choice(["right", "wrong"]))
@click.option("--note", help="Why, in a few words.")
@pass_app
def feedback_command(app: AppContext, media_id: int, target: str, verdict: str, note: str | None) -> None:
    """Say whether Vigil was right about TARGET in MEDIA_ID (its best window of the newest analysis)."""
    app.require_migrated()
    with write_session(app.factory) as session:
        detection = detection_to_judge(session, media_id=media_id, target_name=target)
        record_verdict(session, detection_id=detection.id, verdict=verdict, note=note, origin="cli")
        decided = "matched" if detection.matched else "did not match"
        click.echo(
            f"{verdict}: {target} {decided} in media {media_id} window {detection.window_index} "
            f"(score {detection.p_yes:.3f}, detection {detection.id})"
        )


def read_label_file(path: Path) -> list[tuple[Path, bool]]:
    """`path,label` lines (label yes/no, 1/0, true/false, present/absent); a header line is allowed."""
    rows: list[tuple[Path, bool]] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2:
                    raise ConfigError(f"{path}:{number}: expected path,label, got {len(row)} field(s)")
                label = LABEL_WORDS.get(row[1].strip().lower())
                if label is None:
                    if number == 1:
                        continue  # a header
                    raise ConfigError(f"{path}:{number}: label must be yes/no (or 1/0), not {row[1]!r}")
                rows.append(((path.parent / row[0].strip()).resolve(), label))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return rows


def stored_clip_score(app: AppContext, clip: Path, target_id: int) -> float | None:
    """The best window's score of the newest analysis of this file, when it was analysed for the target."""
    with app.factory() as session:
        newest = session.scalar(
            select(func.max(Analysis.id))
            .join(Media, Media.id == Analysis.media_id)
            .join(Detection, Detection.analysis_id == Analysis.id)
            .where(Media.path == str(clip), Detection.target_id == target_id)
        )
        if newest is None:
            return None
        return session.scalar(
            select(func.max(Detection.p_yes)).where(
                Detection.analysis_id == newest, Detection.target_id == target_id
            )
        )


def labels_from_file(app: AppContext, path: Path, target_id: int, description: str) -> list[Labelled]:
    """Each labelled file's score: from the database when analysed, else scored here (one window)."""
    pending: list[tuple[Path, bool]] = []
    labels: list[Labelled] = []
    for clip, present in read_label_file(path):
        if not clip.is_file():
            raise ConfigError(f"{path}: {clip}: no such file")
        score = stored_clip_score(app, clip, target_id)
        if score is None:
            pending.append((clip, present))
        else:
            labels.append(Labelled(score, present))
    if pending:
        click.echo(f"analysing {len(pending)} file(s) not in the database…", err=True)
        from workers.model.clip import load_clip
        from workers.model.loading import load_configured_model
        from workers.model.scoring import score_targets

        loaded = load_configured_model(app.settings.model)
        for clip, present in pending:
            frames = load_clip(loaded, clip, frames=app.settings.model.frames_per_window)
            score = score_targets(loaded, frames.rgb, fps=frames.fps, descriptions=[description])[0]
            labels.append(Labelled(score, present))
    return labels


def text_histogram(labels: list[Labelled], *, width: int = 40, bins: int = 10) -> list[str]:
    present = histogram([x.score for x in labels if x.present], bins=bins)
    absent = histogram([x.score for x in labels if not x.present], bins=bins)
    top = max(1, *(p + a for p, a in zip(present, absent, strict=True)))
    lines = []
    for i, (p, a) in enumerate(zip(present, absent, strict=True)):
        bar = "+" * round(width * p / top) + "-" * round(width * a / top)
        lines.append(f"  {i / bins:.1f}-{(i + 1) / bins:.1f} |{bar:<{width}}| {p} present, {a} absent")
    return lines


def report(target: str, current: float, fit: Fit, labels: list[Labelled]) -> None:
    click.echo(f"target {target}: {fit.verdicts} labels ({fit.positives} present, {fit.negatives} absent)")
    click.echo("score histogram (+ present, - absent):")
    for line in text_histogram(labels):
        click.echo(line)
    click.echo(f"  {'threshold':<22}{'precision':>10}{'recall':>8}{'matches':>9}")
    from vigil.feedback.calibration import precision_recall

    p, r, n = precision_recall(labels, current)
    click.echo(f"  {f'current {current:.3f}':<22}{p:>10.3f}{r:>8.3f}{n:>9}")
    if fit.threshold is None:
        click.echo(f"no threshold reaches precision {fit.precision_wanted:.2f} (best {fit.precision:.3f})")
        return
    label = f"fitted {fit.threshold:.3f}"
    click.echo(f"  {label:<22}{fit.precision:>10.3f}{fit.recall:>8.3f}{fit.matches:>9}")


@click.command("calibrate")
@click.argument("target")
@click.option("--precision", type=click.FloatRange(0, 1, min_open=True), default=DEFAULT_PRECISION,
              show_default=True, help="Precision the fitted threshold must reach.")  # fmt: skip
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV of path,label (yes/no); files not in the database are analysed here.")  # fmt: skip
@click.option("--apply", "apply_it", is_flag=True, help="Set the target's threshold to the fitted one.")
@pass_app
def calibrate_command(
    app: AppContext, target: str, precision: float, labels_file: Path | None, apply_it: bool
) -> None:
    """Fit TARGET's threshold from verdicts (vigil feedback, the review page) and/or labelled files."""
    app.require_migrated()
    with app.factory() as session:
        row = target_by_name(session, target)
        labels = labels_from_feedback(session, row.id)
    if labels_file is not None:
        labels += labels_from_file(app, labels_file, row.id, row.description)
    fit = fit_threshold(labels, precision=precision)  # NotEnoughLabels is a one-line refusal
    report(target, row.threshold, fit, labels)
    if not apply_it:
        return
    if fit.threshold is None:
        raise ConfigError("nothing to apply: no threshold reaches the wanted precision")
    with write_session(app.factory) as session:
        apply_threshold(
            session,
            target_name=target,
            threshold=fit.threshold,
            file_owned={t.name for t in app.settings.targets},
        )
    click.echo(f"threshold of {target} set to {fit.threshold:.3f} (new analyses use it)")


def register(cli: click.Group) -> None:
    cli.add_command(web_command)
    cli.add_command(feedback_command)
    cli.add_command(calibrate_command)
