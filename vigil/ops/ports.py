"""The ports Vigil's processes listen on, checked before anything starts and bound with one message.

A port that cannot be bound is one line naming the setting that chooses it (and its environment
variable), never a server's traceback after a "listening" line. The bind mirrors the servers' own
(`SO_REUSEADDR`, as uvicorn and prometheus_client set it), so a port left in TIME_WAIT by the last run is
not taken for a busy one.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from vigil.errors import ConfigError


@dataclass(frozen=True)
class Listener:
    """One port a process will listen on, and the setting that chooses it (`web.port`)."""

    what: str
    host: str
    port: int
    setting: str

    @property
    def env(self) -> str:
        return "VIGIL_" + self.setting.upper().replace(".", "__")


class PortUnavailable(ConfigError):
    """A port that cannot be bound, in one line naming the setting to change."""

    def __init__(self, listener: Listener, exc: OSError, *, hint: str = "") -> None:
        reason = exc.strerror or str(exc)
        super().__init__(
            f"{listener.what} cannot listen on {listener.host}:{listener.port}: {reason}; "
            f"set {listener.setting} (or {listener.env}) to a free port{hint}"
        )
        self.listener = listener


def listen(listener: Listener, *, hint: str = "") -> socket.socket:
    """A listening socket for `listener`, or PortUnavailable."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise PortUnavailable(listener, exc, hint=hint) from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PortUnavailable(listener, exc, hint=hint) from exc
    return sock


def check_free(listeners: list[Listener]) -> None:
    """Bind each port and let it go again: the first that cannot be bound raises PortUnavailable."""
    for listener in listeners:
        listen(listener).close()


def web_listener(settings: Any) -> Listener:
    return Listener("the review page", settings.web.host, int(settings.web.port), "web.port")


def metrics_listeners(settings: Any, *, queues: list[str]) -> list[Listener]:
    """The metrics endpoints `vigil run` starts: the watcher's and one per worker queue (port 0: none)."""
    if not settings.metrics.enabled:
        return []
    found = []
    if settings.metrics.watcher_port:
        found.append(Listener("the watcher's metrics", settings.metrics.host, settings.metrics.watcher_port,
                              "metrics.watcher_port"))  # fmt: skip
    for queue in queues:
        port = worker_port(settings, queue)
        if port:
            found.append(
                Listener(f"the {queue} worker's metrics", settings.metrics.host, port, "metrics.worker_port")
            )
    return found


def worker_port(settings: Any, queue: str) -> int:
    """The gpu worker serves `worker_port`, the cpu worker the next one (0 turns both off)."""
    base = int(settings.metrics.worker_port)
    return 0 if base == 0 else base + (0 if queue == "gpu" else 1)
