"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, tuned for one machine.

kombu hands every transport option to `create_engine`, so the virtual transport's `polling_interval`
cannot be set through the broker settings (it is an error there), and a worker then looks for a new
message once a second: most of an embedded run's per-file overhead. This subclass keeps that option for
the transport, and puts the broker's SQLite file in WAL mode with a busy timeout, so the watcher
publishing and the workers polling do not block each other.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from sqlalchemy import create_engine, event

POLLING_INTERVAL_S = 0.05
BUSY_TIMEOUT_MS = 30_000
_TRANSPORT_ONLY = ("polling_interval",)


class Channel(kombu_sqla.Channel):
    def _engine_from_config(self) -> Any:
        client = self.connection.client
        options = dict(client.transport_options)
        for key in (
            *_TRANSPORT_ONLY,
            "queue_tablename",
            "message_tablename",
            "callback",
            "errback",
            "max_retries",
            "interval_start",
            "interval_step",
            "interval_max",
            "retry_errors",
        ):
            options.pop(key, None)
        engine = create_engine(client.hostname, **options)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


class Transport(kombu_sqla.Transport):
    Channel = Channel
    polling_interval = POLLING_INTERVAL_S
