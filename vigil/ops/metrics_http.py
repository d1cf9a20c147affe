"""The Prometheus endpoints' HTTP server: prometheus_client's exposition behind the same door rule as the
review page. It binds `metrics.host` (127.0.0.1 unless set); off loopback the settings demand
`metrics.password`, which every scrape then sends as HTTP Basic (any user name). Requests are not logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def basic_auth(app: WsgiApp, password: str) -> WsgiApp:
    """`app` for requests carrying `password` (HTTP Basic, any user name); 401 for the others."""
    wanted = password.encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        given = b""
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(encoded, validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                given = b""
        if given and hmac.compare_digest(given, wanted):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Basic realm="vigil metrics"')],
        )
        return [b"password required\n"]

    return guarded


def serve(port: int, *, host: str, registry: Collector, password: str | None) -> None:
    """Serve /metrics on `host`:`port` from a daemon thread; OSError when the address cannot be bound."""
    app: WsgiApp = make_wsgi_app(registry)
    if password:
        app = basic_auth(app, password)
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(host, port, app, Server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True, name="metrics").start()
