"""`vigil targets add|list|remove|enable|disable`: the entities asked about, described in words and,
optionally, shown by reference images (`--image`)."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from vigil.cli.context import AppContext, from_arguments, pass_app
from vigil.config.settings import TargetSettings
from vigil.declared.apply import refuse_declared
from vigil.errors import ConfigError
from vigil.media.registry import upsert_target
from vigil.store.db import write_session
from vigil.store.schema import Target
from vigil.terminal import safe


@click.group("targets")
def targets_group() -> None:
    """Manage targets: what to look for, in plain words."""


@targets_group.command("add")
@click.argument("name")
@click.argument("description")
@click.option("--threshold", type=float, help="P(yes) at which it matches (new target: 0.5; else unchanged).")
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A reference image of this very thing (repeat for several); copied into the data directory.",
)
@pass_app
def targets_add(
    app: AppContext, name: str, description: str, threshold: float | None, images: tuple[Path, ...]
) -> None:
    """Add a target, e.g. `vigil targets add van "a white delivery van"`, or by example:
    `vigil targets add mycar "my car" --image front.jpg --image side.jpg`. An existing name is updated:
    its threshold and on/off state are kept unless given, its images replaced by the ones given."""
    app.open_database(pending_targets=(name,))  # a rule in the file may name the target this command makes
    with write_session(app.factory) as session:
        row = session.scalar(select(Target).where(Target.name == name))
        if row is not None:
            refuse_declared(row, f"target {name}")
            threshold = row.threshold if threshold is None else threshold
        conf = from_arguments(
            TargetSettings,
            {"name": "NAME", "description": "DESCRIPTION", "threshold": "--threshold", "images": "--image"},
            name=name,
            description=description,
            threshold=0.5 if threshold is None else threshold,
            enabled=True if row is None else row.enabled,
            images=list(images),
        )
        created = upsert_target(session, conf, row, references_dir=app.settings.storage.references_dir)
    shown = f", {len(conf.images)} reference image(s)" if conf.images else ""
    verb = "added" if created else "updated"
    click.echo(f"{verb} target {conf.name}: {conf.description!r} (threshold {conf.threshold}{shown})")


def open_targets(app: AppContext) -> None:
    """The database with the settings applied, so file-owned targets are known (and refused) by name."""
    app.open_database()


@targets_group.command("list")
@pass_app
def targets_list(app: AppContext) -> None:
    """List targets."""
    open_targets(app)
    with app.factory() as session:
        rows = session.scalars(select(Target).order_by(Target.name)).all()
    if not rows:
        click.echo('no targets; add one with: vigil targets add NAME "description"')
        return
    width = max(len(t.name) for t in rows)
    folder = app.settings.storage.references_dir
    for t in rows:
        state = "on " if t.enabled else "off"
        owner = f"  (from {t.declared_in})" if t.declared_in else ""
        click.echo(safe(f"{t.name:<{width}}  {state}  threshold {t.threshold:.2f}  {t.description}{owner}"))
        for image in t.images or []:
            stored = folder / image["file"]
            missing = "" if stored.is_file() else "  (missing!)"
            size = f"{image['width']}x{image['height']}"
            click.echo(safe(f"{'':<{width}}  image {image['name']} {size}  {stored}{missing}"))


def _existing(app: AppContext, name: str) -> Target:
    """The CLI-owned target `name`; a missing or file-owned one is refused before anything is asked."""
    open_targets(app)
    with app.factory() as session:
        row = session.scalar(select(Target).where(Target.name == name))
    if row is None:
        raise ConfigError(f"no target named {name!r}")
    refuse_declared(row, f"target {name}")
    return row


def _set_enabled(app: AppContext, name: str, enabled: bool) -> None:
    target_id = _existing(app, name).id
    with write_session(app.factory) as session:
        row = session.get(Target, target_id)
        if row is None:
            raise ConfigError(f"no target named {name!r}")
        row.enabled = enabled
    click.echo(f"target {name} {'enabled' if enabled else 'disabled'}")


@targets_group.command("enable")
@click.argument("name")
@pass_app
def targets_enable(app: AppContext, name: str) -> None:
    """Ask about this target again."""
    _set_enabled(app, name, True)


@targets_group.command("disable")
@click.argument("name")
@pass_app
def targets_disable(app: AppContext, name: str) -> None:
    """Stop asking about this target (its past detections stay)."""
    _set_enabled(app, name, False)


@targets_group.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Also delete its detections and alerts without asking.")
@pass_app
def targets_remove(app: AppContext, name: str, yes: bool) -> None:
    """Delete a target with its detections and alerts (use `disable` to keep them)."""
    target_id = _existing(app, name).id
    if not yes:
        click.confirm(f"delete target {name} and all its detections and alerts?", abort=True)
    with write_session(app.factory) as session:
        row = session.get(Target, target_id)
        if row is not None:
            session.delete(row)
    click.echo(f"removed target {name}")


def register(cli: click.Group) -> None:
    cli.add_command(targets_group)
