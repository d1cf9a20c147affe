"""`vigil rules add|list|remove|test`: who gets told, about what, when."""

from __future__ import annotations

import click
from sqlalchemy import select

from vigil.alerts.evaluation import Explanation, explain_rule
from vigil.alerts.sync import known_names, upsert_rule, validate_rule
from vigil.cli.context import AppContext, from_arguments, pass_app
from vigil.config.settings import RuleSettings
from vigil.declared.apply import refuse_declared
from vigil.errors import ConfigError
from vigil.formats.types import window_span
from vigil.store.db import write_session
from vigil.store.schema import AlertRule


def open_rules(app: AppContext) -> None:
    """Open the database with the settings applied (the file's rules included)."""
    app.open_database()


@click.group("rules")
def rules_group() -> None:
    """Manage alert rules: on what (a detection, a camera offline, disk pressure), where, when, to whom."""


# Each field of a rule, as the argument or option of `rules add` that sets it.
RULE_ARGUMENTS = {
    "name": "NAME",
    "on": "--on",
    "after_s": "--after",
    "targets": "--target",
    "sources": "--source",
    "cooldown_s": "--cooldown",
    "channels": "--channel",
}


@rules_group.command("add")
@click.argument("name")
@click.option(
    "--on",
    type=click.Choice(["detection", "camera_offline", "disk_pressure"]),
    help="What fires it (default: detection).",
)
@click.option(
    "--after", "after_s", type=float, help="camera_offline: seconds an outage lasts before it fires."
)
@click.option("--target", "-t", "targets", multiple=True, help="Target name (repeat; default: every target).")
@click.option("--source", "-s", "sources", multiple=True, help="Source name or glob (repeat; default: all).")
@click.option("--min-score", type=float, help="P(yes) needed (default: the target's threshold).")
@click.option("--days", help="Comma-separated days, e.g. mon,tue,sat (default: every day).")
@click.option("--hours", help='Hours of the day, e.g. "22-06" (wraps midnight) or "08:30-17:00".')
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of the schedule.")
@click.option("--min-consecutive", type=int, help="Consecutive windows needed (default: 1).")
@click.option("--cooldown", type=float, default=300.0, show_default=True, help="Seconds per rule and source.")
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]), default="warning")
@click.option("--message", help="Message template, e.g. '{target} at {source} ({score:.2f})'.")
# No short flag: `-c` is --config on every command (it was --channel here alone).
@click.option("--channel", "channels", multiple=True, help="Channel name (repeat; default: log).")
@pass_app
def rules_add(app: AppContext, name: str, **options: object) -> None:
    """Add or replace a rule, e.g. `vigil rules add night -t person --hours 22-06 --timezone Europe/Paris`."""
    values = {key: value for key, value in options.items() if value not in (None, ())}
    if "days" in values:
        values["days"] = [d.strip().lower() for d in str(values["days"]).split(",") if d.strip()]
    if "cooldown" in values:
        values["cooldown_s"] = values.pop("cooldown")
    conf = from_arguments(RuleSettings, RULE_ARGUMENTS, name=name, **values)
    open_rules(app)
    with write_session(app.factory) as session:
        targets, channels = known_names(session, app.settings)
        validate_rule(conf, targets=targets, channels=channels)
        row = session.scalar(select(AlertRule).where(AlertRule.name == name))
        if row is not None:
            refuse_declared(row, f"rule {name}")
        upsert_rule(session, conf, row)
    click.echo(f"{'updated' if row else 'added'} rule {name}")


def describe(rule: AlertRule) -> str:
    sources = f"sources={','.join(rule.source_globs) or '*'}"
    if rule.event == "camera_offline":
        parts = ["on=camera_offline", sources, f"after={rule.after_s or 0:g}s"]
    elif rule.event == "disk_pressure":
        parts = ["on=disk_pressure"]
    else:
        parts = [
            f"targets={','.join(rule.target_names) or '*'}",
            sources,
            f"min_score={'threshold' if rule.min_score is None else f'{rule.min_score:.2f}'}",
        ]
    if rule.days or rule.hours:
        parts.append(f"when={','.join(rule.days) or 'daily'} {rule.hours or 'all day'} {rule.timezone}")
    if rule.event == "detection" and rule.min_consecutive > 1:
        parts.append(f"consecutive={rule.min_consecutive}")
    parts += [f"cooldown={rule.cooldown_s:g}s", rule.severity, f"-> {','.join(rule.channel_names)}"]
    return " ".join(parts)


@rules_group.command("list")
@pass_app
def rules_list(app: AppContext) -> None:
    """List rules."""
    open_rules(app)
    with app.factory() as session:
        rows = list(session.scalars(select(AlertRule).order_by(AlertRule.name)))
    if not rows:
        click.echo("no rules; add one with: vigil rules add NAME --target TARGET")
    for rule in rows:
        click.echo(f"{rule.name}  {'on ' if rule.enabled else 'off'}  {describe(rule)}")


@rules_group.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Also delete its alerts without asking.")
@pass_app
def rules_remove(app: AppContext, name: str, yes: bool) -> None:
    """Delete a rule and its alerts."""
    open_rules(app)
    with app.factory() as session:
        found = session.scalar(select(AlertRule).where(AlertRule.name == name))
    if found is None:
        raise ConfigError(f"no rule named {name!r}")
    refuse_declared(found, f"rule {name}")
    if not yes:
        click.confirm(f"delete rule {name} and its alerts?", abort=True)
    with write_session(app.factory) as session:
        row = session.scalar(select(AlertRule).where(AlertRule.name == name))
        if row is not None:
            session.delete(row)
    click.echo(f"removed rule {name}")


@rules_group.command("test")
@click.argument("name")
@click.option("--media", "media_id", type=int, required=True, help="Media id (the newest answer per target).")
@pass_app
def rules_test(app: AppContext, name: str, media_id: int) -> None:
    """Show what RULE would fire for a media file, and why not, window by window. Changes nothing."""
    open_rules(app)
    with app.factory() as session:
        why = explain_rule(session, name, media_id)
    click.echo(f"rule {name}: {describe_compiled(why)}")
    if not why.source_ok:
        click.echo(f"  source {why.source}: not matched by {', '.join(why.rule.sources)}")
        return
    if not why.checks:
        click.echo("  no detections of the rule's targets in any analysis")
    for c in why.checks:
        score = f"score {c.score:.2f} {'>=' if c.score_ok else '< '} {c.min_score:.2f}"
        when = f"{c.local_time:%a %Y-%m-%d %H:%M:%S %Z} {'in' if c.schedule_ok else 'outside'} schedule"
        run = f"run {c.run}/{why.rule.min_consecutive}" if c.run else "no run"
        inherited = " inherited" if c.inherited else ""
        click.echo(
            f"  {c.target} window {c.window_index}{inherited} ({window_span(c.start_s, c.end_s)}): "
            f"{score}; {when}; {run}; analysis {c.analysis_id}"
        )
    if not why.outcomes:
        click.echo("  => would not fire")
    for candidate, reason in why.outcomes:
        first, last = candidate.windows[0][1], candidate.windows[-1][1]
        indices = (
            f"s {first.window_index}-{last.window_index}" if first is not last else f" {first.window_index}"
        )
        span = f"{candidate.target.name} window{indices}"
        click.echo(f"  => {span}: {'would fire' if reason is None else 'blocked: ' + reason}")


def describe_compiled(why: Explanation) -> str:  # `rules test` explains detection rules only
    rule = why.rule
    return f"{rule.severity}, cooldown {rule.cooldown_s:g} s, zone {rule.zone.key}"


def register(cli: click.Group) -> None:
    cli.add_command(rules_group)
