"""`vigil targets add|list|remove|enable|disable`: the entities asked about, described in words and,
optionally, shown by reference images (`--image`)."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import ValidationError
from sqlalchemy import select

from vigil.cli.context import AppContext, pass_app
from vigil.db import write_session
from vigil.errors import ConfigError
from vigil.registry import upsert_target
from vigil.schema import Target
from vigil.settings import TargetSettings, format_validation_error
from vigil.terminal import safe


@click.group("targets")
def targets_group() -> None:
    """Manage targets: what to look for, in plain words."""


@targets_group.command("add")
@click.argument("name")
@click.argument("description")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="P(yes) at which it matches.")
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A reference image of this very thing (repeat for several); copied into the data directory.",
)
@pass_app
def targets_add(
    app: AppContext, name: str, description: str, threshold: float, images: tuple[Path, ...]
) -> None:
    """Add a target, e.g. `vigil targets add van "a white delivery van"`, or by example:
    `vigil targets add mycar "my car" --image front.jpg --image side.jpg`. An existing name is updated
    (its images are replaced by the ones given)."""
    try:
        conf = TargetSettings(name=name, description=description, threshold=threshold, images=list(images))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from exc
    app.require_migrated()
    with write_session(app.factory) as session:
        row = session.scalar(select(Target).where(Target.name == conf.name))
        created = upsert_target(session, conf, row, references_dir=app.settings.storage.references_dir)
    shown = f", {len(conf.images)} reference image(s)" if conf.images else ""
    verb = "added" if created else "updated"
    click.echo(f"{verb} target {conf.name}: {conf.description!r} (threshold {conf.threshold}{shown})")


@targets_group.command("list")
@pass_app
def targets_list(app: AppContext) -> None:
    """List targets."""
    app.open_database()
    with app.factory() as session:
        rows = session.scalars(select(Target).order_by(Target.name)).all()
    if not rows:
        click.echo('no targets; add one with: vigil targets add NAME "description"')
        return
    width = max(len(t.name) for t in rows)
    folder = app.settings.storage.references_dir
    for t in rows:
        state = "on " if t.enabled else "off"
        click.echo(safe(f"{t.name:<{width}}  {state}  threshold {t.threshold:.2f}  {t.description}"))
        for image in t.images or []:
            stored = folder / image["file"]
            missing = "" if stored.is_file() else "  (missing!)"
            size = f"{image['width']}x{image['height']}"
            click.echo(safe(f"{'':<{width}}  image {image['name']} {size}  {stored}{missing}"))


def _set_enabled(app: AppContext, name: str, enabled: bool) -> None:
    app.require_migrated()
    with write_session(app.factory) as session:
        row = session.scalar(select(Target).where(Target.name == name))
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
    app.require_migrated()
    if not yes:
        click.confirm(f"delete target {name} and all its detections and alerts?", abort=True)
    with write_session(app.factory) as session:
        row = session.scalar(select(Target).where(Target.name == name))
        if row is None:
            raise ConfigError(f"no target named {name!r}")
        session.delete(row)
    click.echo(f"removed target {name}")


def register(cli: click.Group) -> None:
    cli.add_command(targets_group)
