"""`vigil prune`: apply the retention policy once (`--dry-run`: only say what would go)."""

from __future__ import annotations

import sys

import click

from vigil.cli.context import AppContext, pass_app
from vigil.media.retention import PruneReport, policy_enabled, prune
from vigil.terminal import safe


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted and why; delete nothing.")
@pass_app
def prune_command(app: AppContext, dry_run: bool) -> None:
    """Delete media files and thumbnails past their retention, and free space where a volume is below
    min_free (oldest unalerted files first), as the watcher does on its schedule.

    Prints one line per deletion with its reason. Exits 1 when a volume is still below min_free (only
    evidence is left to delete there).
    """
    settings = app.settings
    if not policy_enabled(settings):
        click.echo("retention is off: set keep_days, keep_alerted_days or min_free ([retention] or a source)")
        return
    if dry_run:
        app.require_migrated(initialise=False)
    else:
        app.open_database()
    report = prune(app.factory, settings, dry_run=dry_run)
    _print(report)
    if report.pressure:
        sys.exit(1)


def _print(report: PruneReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    for d in report.deletions:
        what = "row only (file already gone)" if d.what == "gone" else d.what
        click.echo(safe(f"{verb} media {d.media_id} {d.path} [{what}, {d.size_bytes} bytes]: {d.reason}"))
    for media_id, path, why in report.refused:
        click.echo(safe(f"kept media {media_id} {path}: {why}"), err=True)
    for p in report.pressure:
        click.echo(
            safe(
                f"DISK PRESSURE: {p.volume} has {p.free_bytes} bytes free, below min_free {p.min_free} "
                f"({p.needed_bytes} bytes); only evidence is left there"
            ),
            err=True,
        )
    total = "would free" if report.dry_run else "freed"
    click.echo(f"{len(report.deletions)} deletion(s), {total} {report.freed_bytes} bytes")


def register(cli: click.Group) -> None:
    cli.add_command(prune_command)
