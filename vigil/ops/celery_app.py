"""The Celery application, configured from settings. Torch-free: producers and workers share it.

Long GPU tasks need: late acknowledgement (a task lost with its worker is delivered again), one message
prefetched at a time, a visibility timeout longer than any task with a hard time limit below it, results
ignored (the SQL database holds them), JSON only, and broker connections retried forever.

Celery's own tools work as documented: `celery -A vigil.ops.celery_app inspect ping`, `... events`, Flower
(`celery -A vigil.ops.celery_app flower`). `app` below is built from the settings on first use (vigil.toml,
$VIGIL_CONFIG, VIGIL_* variables). Each queue has its own direct exchange. Workers send task events and
heartbeats on Redis and RabbitMQ; the embedded broker (kombu's SQLAlchemy transport) has no fanout, so
it carries neither events nor remote control: there `celery inspect`, `status`, `control` and `events`
say so in one line (`NO_REMOTE_CONTROL`), and `celery report` works.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.control import Control
from celery.app.events import Events
from celery.exceptions import CeleryCommandException
from kombu import Exchange, Queue
from kombu.transport import TRANSPORT_ALIASES

from vigil.config.settings import Settings
from vigil.ops.contracts import CPU_QUEUE, GPU_QUEUE, TASK_QUEUES

EMBEDDED_SCHEME = "sqla+"
# The remote-control inspect command each worker answers with its queue and model (`vigil workers`).
INFO_COMMAND = "vigil_info"


EMBEDDED_TRANSPORT = "vigil.ops.sqla_broker:Transport"
# The embedded broker's URL without its `sqla+` (kombu would pick its own transport from that prefix) is a
# `sqlite:` URL: tools that make a Connection from the URL alone (`celery report`) find the transport here.
TRANSPORT_ALIASES.setdefault("sqlite", EMBEDDED_TRANSPORT)
NO_REMOTE_CONTROL = (
    "the embedded broker (sqla+sqlite) carries no remote control and no events: celery's inspect, status, "
    "control and events commands and Flower need a Redis or RabbitMQ broker (broker.url); "
    "here `vigil workers`, `vigil health` and `vigil status` answer"
)
EX_UNAVAILABLE = 69  # what Celery's commands exit with when the broker cannot answer


class EmbeddedControl(Control):
    """Remote control on the embedded broker: refused in one line, instead of "unable to open database file"
    or a silent "no nodes replied"."""

    def broadcast(self, *_args: Any, **_kwargs: Any) -> Any:
        raise CeleryCommandException(message=NO_REMOTE_CONTROL, exit_code=EX_UNAVAILABLE)


class EmbeddedEvents(Events):
    """Events on the embedded broker (`celery events`): refused in one line, no reconnect loop."""

    @property
    def Receiver(self) -> Any:  # Celery's name
        raise CeleryCommandException(message=NO_REMOTE_CONTROL, exit_code=EX_UNAVAILABLE)


def is_embedded(settings: Settings) -> bool:
    return settings.broker.url.startswith(EMBEDDED_SCHEME)


def task_queues() -> list[Queue]:
    """One direct exchange per queue, named after it (never the default queue's exchange)."""
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in (GPU_QUEUE, CPU_QUEUE)]


def redis_network_bounds(timeout_s: float) -> dict[str, object]:
    """redis-py's socket options that bound a dead or partitioned link to Redis: a read that waits longer
    than ``timeout_s`` fails (kombu reconnects), connects time out, idle connections are probed by TCP
    keepalives and checked with a PING before use after ``health_check_interval``."""
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": min(timeout_s, 10.0),
        "socket_keepalive": True,
        "health_check_interval": max(1, int(timeout_s / 2)),
        "retry_on_timeout": True,
    }


def make_celery(settings: Settings, **options: Any) -> Celery:
    """The app for `settings`; `options` go to Celery() (the tools' app passes its control and events)."""
    broker = settings.broker
    transport_options: dict[str, object] = {}
    events = not is_embedded(settings)
    if is_embedded(settings):
        # The embedded broker: kombu's SQLAlchemy transport, subclassed to poll faster on a WAL file.
        url = broker.url.removeprefix(EMBEDDED_SCHEME)
        app = Celery("vigil", broker=url, set_as_current=False, **options)
        app.conf.broker_transport = EMBEDDED_TRANSPORT
    else:
        app = Celery("vigil", broker=broker.url, set_as_current=False, **options)
        transport_options["visibility_timeout"] = broker.visibility_timeout_s
        if broker.url.startswith(("redis://", "rediss://")):
            transport_options |= redis_network_bounds(broker.network_timeout_s)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=broker.task_time_limit_s,
        task_soft_time_limit=broker.soft_time_limit_s,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport_options,
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_channel_error_retry=True,
        task_queues=task_queues(),
        task_default_queue=CPU_QUEUE,
        task_default_exchange=CPU_QUEUE,
        task_default_routing_key=CPU_QUEUE,
        task_routes={name: {"queue": q, "exchange": q, "routing_key": q} for name, q in TASK_QUEUES.items()},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Flower's workers and tasks pages, `celery events` and `control enable_events` need these.
        worker_send_task_events=events,
        task_send_sent_event=events,
        broker_heartbeat=0,  # AMQP connection heartbeats: long GPU tasks block the worker's I/O loop
    )
    return app


def __getattr__(name: str) -> Any:
    """`app`, for `celery -A vigil.ops.celery_app ...`: built from the settings when first asked for."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from vigil.config.settings import load_settings

    global _app
    if _app is None:
        settings = load_settings()
        tools = {"control": EmbeddedControl, "events": EmbeddedEvents} if is_embedded(settings) else {}
        _app = make_celery(settings, **tools)
        _app.set_current()
    return _app


_app: Celery | None = None
