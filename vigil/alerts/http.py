"""HTTP for the webhook sender: one reused ``httpx.Client`` per channel, one total deadline per request,
and at most a few hundred bytes of the answer read.

httpx's timeouts are per operation: a receiver that drips a byte every 1.5 s resets a 2 s read timeout
forever (a ``timeout_s = 2`` send was held 28.5 s). A watchdog timer shuts the request's socket down at
the deadline instead; it finds the socket through httpcore's ``connect_tcp`` trace, so connections are not
kept alive between sends (each send connects, and the watchdog always holds its socket). The client, its
TLS context and settings are still made once per channel and process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

import httpx

BODY_LIMIT = 500  # bytes of an answer read, for the error message; a 400 MB error body costs nothing

_clients: dict[tuple[int, str, float], httpx.Client] = {}
_clients_lock = threading.Lock()


class DeadlineExceeded(Exception):
    """The whole request (connect, send, headers, body) ran past its deadline."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: httpx.Headers
    head: str  # the first BODY_LIMIT bytes of the body, decoded leniently


def client_for(channel: str, timeout_s: float) -> httpx.Client:
    """The channel's client in this process (a forked worker makes its own)."""
    key = (os.getpid(), channel, timeout_s)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = httpx.Client(
                timeout=timeout_s,
                follow_redirects=False,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            _clients[key] = client
        return client


class _Watchdog:
    """Shuts down the sockets of one request when its deadline passes."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if not event.endswith(".complete") or "connect_" not in event:
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                late = self.expired
            if late:
                _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def post(
    client: httpx.Client, url: str, *, content: bytes, headers: dict[str, str], deadline_s: float
) -> Answer:
    """POST within ``deadline_s`` in all; raise DeadlineExceeded past it, httpx errors otherwise."""
    with _Watchdog(deadline_s) as watchdog:
        try:
            with client.stream(
                "POST", url, content=content, headers=headers, extensions={"trace": watchdog.trace}
            ) as response:
                head = _read_at_most(response, BODY_LIMIT)
        except httpx.HTTPError as exc:
            if watchdog.expired:
                raise DeadlineExceeded(f"no complete answer within {deadline_s:g} s") from exc
            raise
    return Answer(response.status_code, response.headers, head.decode("utf-8", "replace"))


def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes as sent (no decompression: a gzip bomb stays small); the rest is not read."""
    head = b""
    for chunk in response.iter_raw():
        head += chunk
        if len(head) >= limit:
            break
    return head[:limit]
