"""`vigil alerts list|show|retry`: what fired, where it went, and sending it again."""

from __future__ import annotations

import click
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vigil.cli.context import AppContext, pass_app
from vigil.errors import ConfigError
from vigil.formats.types import window_span
from vigil.store.db import write_session
from vigil.store.schema import Alert, AlertRule, Channel, Delivery, DeliveryStatus, Media, utcnow
from vigil.terminal import safe


@click.group("alerts")
def alerts_group() -> None:
    """Alerts that rules fired, and their deliveries."""


@alerts_group.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option(
    "--status", type=click.Choice(["pending", "delivered", "failed"]), help="Only with a delivery in it."
)
@pass_app
def alerts_list(app: AppContext, limit: int, status: str | None) -> None:
    """The latest alerts, newest first, with each channel's delivery status."""
    app.require_migrated(initialise=False)
    query = select(Alert, AlertRule.name).join(AlertRule, AlertRule.id == Alert.rule_id)
    if status:
        query = query.where(Alert.id.in_(select(Delivery.alert_id).where(Delivery.status == status)))
    query = query.options(selectinload(Alert.deliveries)).order_by(Alert.id.desc()).limit(limit)
    with app.factory() as session:
        rows = session.execute(query).all()
    if not rows:
        click.echo("no alerts")
    for alert, rule in rows:
        sent = " ".join(f"{d.channel}:{d.status}" for d in sorted(alert.deliveries, key=lambda d: d.channel))
        what = f"{alert.score:.2f}" if alert.score is not None else alert.event  # an event has no score
        click.echo(
            safe(
                f"{alert.id:>6}  {alert.fired_at:%Y-%m-%d %H:%M:%S}Z  {rule}  {alert.severity}  "
                f"{what}  {alert.message}  [{sent}]"
            )
        )


@alerts_group.command("show")
@click.argument("alert_id", type=int)
@pass_app
def alerts_show(app: AppContext, alert_id: int) -> None:
    """One alert in full: rule, media and window (or its event), message and every delivery's state."""
    app.require_migrated(initialise=False)
    with app.factory() as session:
        alert = session.get(Alert, alert_id, options=[selectinload(Alert.deliveries)])
        if alert is None:
            raise ConfigError(f"no alert with id {alert_id}")
        rule = session.get_one(AlertRule, alert.rule_id)
        kind = session.scalar(select(Media.kind).where(Media.id == alert.media_id))
    click.echo(safe(f"alert {alert.id}: {alert.message}"))
    click.echo(safe(f"  rule      {rule.name} ({alert.severity}), fired {alert.fired_at.isoformat()}"))
    if alert.event == "detection":
        _show_detection(alert, kind)
    else:
        _show_event(alert)
    click.echo(safe(f"  dedup     {alert.dedup_key}"))
    for d in sorted(alert.deliveries, key=lambda d: d.channel):
        state = f"{d.status}, {d.attempts} attempt(s)"
        if d.status == DeliveryStatus.PENDING and d.next_attempt_at:
            state += f", next at {d.next_attempt_at.isoformat()}"
        if d.delivered_at:
            state += f", delivered {d.delivered_at.isoformat()}"
        click.echo(safe(f"  -> {d.channel} [{d.id}] {state}  id {d.idempotency_key}"))
        if d.last_error:
            click.echo(safe(f"       last error: {d.last_error}"))


def _show_detection(alert: Alert, kind: str | None) -> None:
    media = alert.payload.get("media", {})
    source = media.get("source", "")
    click.echo(safe(f"  media     {alert.media_id} {media.get('path', '')} (source {source})"))
    click.echo(safe(f"  target    {alert.payload.get('target', {}).get('name', alert.target_id)}"))
    where = window_span(alert.start_s or 0.0, alert.end_s or 0.0, kind)
    click.echo(safe(f"  window    {where}, score {alert.score or 0.0:.3f}"))
    if alert.payload.get("thumbnail_path"):
        click.echo(safe(f"  thumbnail {alert.payload['thumbnail_path']}"))


def _show_event(alert: Alert) -> None:
    """A camera_offline or disk_pressure alert: no media, no verdict; what it is about."""
    click.echo(safe(f"  event     {alert.event} on host {alert.host}"))
    outage, volume = alert.payload.get("outage"), alert.payload.get("volume")
    if outage:
        source = alert.payload.get("source", {}).get("name", alert.source_id)
        click.echo(safe(f"  outage    {outage.get('id')} of {source} since {outage.get('started_at')}"))
        click.echo(safe(f"  reason    {outage.get('reason')}"))
    if volume:
        click.echo(
            safe(
                f"  volume    {volume.get('path')}: {volume.get('free_bytes')} bytes free, "
                f"{volume.get('needed_bytes')} needed (min_free {volume.get('min_free')})"
            )
        )


@alerts_group.command("retry")
@click.argument("alert_id", type=int)
@click.option("--channel", "channels", multiple=True, help="Only this channel (repeat).")
@click.option(
    "--enable", is_flag=True, help="Re-enable those channels if they were disabled (e.g. after 410)."
)
@pass_app
def alerts_retry(app: AppContext, alert_id: int, channels: tuple[str, ...], enable: bool) -> None:
    """Send an alert's failed deliveries again: each becomes a new outbox row with a fresh retry horizon.

    The idempotency key stays the same, so a receiver that got it before can recognise it.
    """
    app.require_migrated()
    new_ids: list[int] = []
    with write_session(app.factory) as session:
        alert = session.get(Alert, alert_id, options=[selectinload(Alert.deliveries)])
        if alert is None:
            raise ConfigError(f"no alert with id {alert_id}")
        failed = [
            d
            for d in alert.deliveries
            if d.status == DeliveryStatus.FAILED and (not channels or d.channel in channels)
        ]
        if enable:
            names = {d.channel for d in failed} | set(channels)
            for row in session.scalars(select(Channel).where(Channel.name.in_(names))):
                row.disabled_at, row.disabled_reason = None, None
                click.echo(f"channel {row.name} enabled")
        new_ids = _reopen(session, alert, failed)
    if not new_ids:
        click.echo(f"alert {alert_id}: no failed deliveries to retry")
        return
    from vigil.ops.celery_app import make_celery
    from vigil.ops.enqueue import Enqueuer

    enqueuer = Enqueuer(make_celery(app.settings), app.factory)
    sent = sum(1 for delivery_id in new_ids if enqueuer.deliver(delivery_id))
    click.echo(f"alert {alert_id}: {len(new_ids)} deliveries pending again, {sent} sent to the queue")


def _reopen(session: Session, alert: Alert, failed: list[Delivery]) -> list[int]:
    specs = [(d.channel, d.idempotency_key) for d in failed]
    for d in failed:
        alert.deliveries.remove(d)
    session.flush()  # the old rows go before their channel and key are used again
    rows = [
        Delivery(alert_id=alert.id, channel=channel, idempotency_key=key, next_attempt_at=utcnow())
        for channel, key in specs
    ]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def register(cli: click.Group) -> None:
    cli.add_command(alerts_group)
