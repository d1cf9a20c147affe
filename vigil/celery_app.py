"""The Celery application, configured from settings. Torch-free: producers and workers share it.

Long GPU tasks need: late acknowledgement (a task lost with its worker is delivered again), one message
prefetched at a time, a visibility timeout longer than any task with a hard time limit below it, results
ignored (the SQL database holds them), JSON only, and broker connections retried forever.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from vigil.contracts import CPU_QUEUE, GPU_QUEUE, TASK_QUEUES
from vigil.settings import Settings

EMBEDDED_SCHEME = "sqla+"


def make_celery(settings: Settings) -> Celery:
    broker = settings.broker
    transport_options: dict[str, object] = {}
    if broker.url.startswith(EMBEDDED_SCHEME):
        # The embedded broker: kombu's SQLAlchemy transport, subclassed to poll faster on a WAL file.
        app = Celery("vigil", broker=broker.url.removeprefix(EMBEDDED_SCHEME), set_as_current=False)
        app.conf.broker_transport = "vigil.sqla_broker:Transport"
    else:
        app = Celery("vigil", broker=broker.url, set_as_current=False)
        transport_options["visibility_timeout"] = broker.visibility_timeout_s
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=broker.task_time_limit_s,
        task_soft_time_limit=broker.task_time_limit_s * 0.95,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport_options,
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_channel_error_retry=True,
        task_queues=[Queue(GPU_QUEUE), Queue(CPU_QUEUE)],
        task_default_queue=CPU_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        broker_heartbeat=0,
    )
    return app
