"""`vigil scan` (backfill a folder) and `vigil reanalyze` (ask one target again), with progress on stderr."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vigil.cli.context import AppContext, pass_app
from vigil.media.backfill import (
    check_source_row,
    enqueue_all,
    mark_for_reanalysis,
    media_since,
    parse_since,
    source_settings_for_scan,
)
from vigil.media.progress import Progress, count_statuses, follow
from vigil.store.schema import MediaStatus, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from vigil.config.settings import SourceSettings, WatchSettings
    from vigil.ops.enqueue import Enqueuer
    from watcher.scan import ScanReport


def _progress(label: str, *, interval_s: float) -> Progress:
    return Progress(stream=sys.stderr, label=label, interactive=sys.stderr.isatty(), interval_s=interval_s)


def _enqueuer(app: AppContext) -> Enqueuer:
    from vigil.ops.celery_app import make_celery
    from vigil.ops.enqueue import Enqueuer

    return Enqueuer(make_celery(app.settings), app.factory)


def _finish(
    app: AppContext, media_ids: Sequence[int], progress: Progress, *, wait: bool, poll_s: float
) -> None:
    if wait:
        follow(app.factory, media_ids, progress, poll_s=poll_s)
    progress.close()
    failed = progress.counts[MediaStatus.FAILED]
    if wait and failed:
        hint = "vigil sql \"SELECT path, error FROM media_v WHERE status = 'failed'\""
        click.echo(f"{failed} failed; see: {hint}", err=True)
        sys.exit(1)


_WAIT_HELP = "Follow until every file is analysed; exit 1 when some failed."
_INTERVAL_HELP = "Seconds between progress lines when stderr is not a terminal."
_POLL_HELP = "Seconds between progress checks."


@click.command("scan")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--source",
    "source_name",
    metavar="NAME",
    help="A configured source (its rules), or the name "
    "to give an ad-hoc folder (default: the folder's name).",
)
@click.option("--wait", is_flag=True, help=_WAIT_HELP)
@click.option("--poll", "poll_s", default=1.0, show_default=True, help=_POLL_HELP)
@click.option("--interval", "interval_s", default=10.0, show_default=True, help=_INTERVAL_HELP)
@pass_app
def scan_command(
    app: AppContext,
    folder: Path | None,
    source_name: str | None,
    wait: bool,
    poll_s: float,
    interval_s: float,
) -> None:
    """Register every existing file of FOLDER (the watcher's rules) and queue it for analysis.

    Files already registered with the same size and mtime are not queued again.
    """
    source = source_settings_for_scan(folder, source_name, app.settings.watch.sources)
    app.open_database()
    progress = _progress(f"scan {source.name}", interval_s=interval_s)
    run = scan_folder(
        app.factory, _enqueuer(app), source, watch=app.settings.watch, progress=progress, poll_s=poll_s
    )
    r = run.report
    click.echo(
        f"scanned {source.path}: {r.found} found, {r.queued} queued, {r.known} already known, "
        f"{r.failed} unreadable, {r.skipped} skipped",
        err=True,
    )
    _finish(app, run.media_ids, progress, wait=wait, poll_s=poll_s)


@dataclass
class ScanRun:
    report: ScanReport
    media_ids: list[int]


def scan_folder(
    factory: sessionmaker[Session],
    enqueuer: Enqueuer,
    source: SourceSettings,
    *,
    watch: WatchSettings,
    progress: Progress | None = None,
    poll_s: float = 0.5,
) -> ScanRun:
    """Register and send every file of the folder with the watcher's own rules (`scan_source`), showing
    progress from the rows while it runs. A file already registered (same size and mtime) is not sent
    again, so scanning twice queues nothing new. The composition root: it runs the watcher's scan."""
    from watcher.scan import scan_source  # torch-free; imported only to scan

    check_source_row(factory, source)
    started = utcnow()
    outcome: dict[str, Any] = {}

    def scan() -> None:
        try:
            outcome["report"] = scan_source(factory, enqueuer, source, watch=watch)
        except BaseException as exc:  # handed to the calling thread below
            outcome["error"] = exc

    thread = threading.Thread(target=scan, name=f"scan-{source.name}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll_s)
        if progress is not None:
            progress.update(counts=count_statuses(factory, media_since(factory, source.name, started)))
    if "error" in outcome:
        raise outcome["error"]
    ids = media_since(factory, source.name, started)
    if progress is not None:
        progress.update(counts=count_statuses(factory, ids), found=outcome["report"].found, force=True)
    return ScanRun(outcome["report"], ids)


@click.command("reanalyze")
@click.option("--target", "target_name", required=True, metavar="NAME", help="The target to ask again.")
@click.option(
    "--since",
    metavar="WHEN",
    help="Only files recorded since then: 2d, 12h, 30m, 1w or an ISO "
    "date/time (UTC unless it has an offset).",
)
@click.option("--source", "source_name", metavar="NAME", help="Only this source.")
@click.option("--wait", is_flag=True, help=_WAIT_HELP)
@click.option("--poll", "poll_s", default=1.0, show_default=True, help=_POLL_HELP)
@click.option("--interval", "interval_s", default=10.0, show_default=True, help=_INTERVAL_HELP)
@pass_app
def reanalyze_command(
    app: AppContext,
    target_name: str,
    since: str | None,
    source_name: str | None,
    wait: bool,
    poll_s: float,
    interval_s: float,
) -> None:
    """Ask one target again about analysed (done or failed) files, e.g. after changing its description.

    Only that target's question is asked; earlier answers stay, and latest_detections_v shows the newest.
    """
    cutoff = parse_since(since) if since else None
    app.open_database()
    marked = mark_for_reanalysis(app.factory, target_name=target_name, since=cutoff, source_name=source_name)
    if not marked.media_ids:
        click.echo(f"nothing to re-analyse for target {target_name}", err=True)
        return
    progress = _progress(f"reanalyze {target_name}", interval_s=interval_s)
    progress.update(found=len(marked.media_ids), counts=count_statuses(app.factory, marked.media_ids))
    sent = enqueue_all(_enqueuer(app), marked.media_ids)
    count = len(marked.media_ids)
    click.echo(f"re-analysing {count} file(s) for target {target_name} ({sent} sent)", err=True)
    _finish(app, marked.media_ids, progress, wait=wait, poll_s=poll_s)


def register(cli: click.Group) -> None:
    cli.add_command(scan_command)
    cli.add_command(reanalyze_command)
