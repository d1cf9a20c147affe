"""Running Vigil's processes and the wire between them: the Celery app and its contract (task names,
queues, payloads), the embedded broker, sending work by name after commit, the supervisor of `vigil
run`'s children, logging setup, Prometheus metrics, health checks and the live-worker answer.

May import: vigil.errors, vigil.terminal, vigil.formats, vigil.config, vigil.store
"""
