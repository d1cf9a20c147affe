"""A webhook receiver cannot hang or balloon a sender: one total deadline per send, a few hundred bytes of
an error body read, one client per channel reused. The receivers are real sockets that misbehave."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from vigil.alerts.channels import DeliveryFailed, Notification, WebhookSender, build_sender
from vigil.alerts.http import BODY_LIMIT, client_for
from vigil.config.settings import ChannelSettings


def note() -> Notification:
    payload = {"type": "vigil.alert", "alert": {"id": 1}}
    return Notification("msg_1", payload, "subject", "text", "warning", None)


class RawReceiver:
    """A TCP server that reads each request's head and body, then answers with ``behave(conn)``."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.behave = behave
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.connections = 0
        self.sent = 0  # bytes the receiver managed to write before the sender hung up
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # stopped
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            length = int(next(h.split(b":")[1] for h in lines if h.startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(65536)
            with contextlib.suppress(OSError):  # the sender hung up: what these tests want
                self.behave(conn)

    def write(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


@contextmanager
def receiver(behave: Callable[[RawReceiver, socket.socket], None]) -> Iterator[RawReceiver]:
    server = RawReceiver(lambda conn: behave(server, conn))
    try:
        yield server
    finally:
        server.stop()


def drip_headers(server: RawReceiver, conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-slow: " + b"y" * 40 + b"\r\n\r\n":
        server.write(conn, bytes([byte]))
        time.sleep(1.5)


def drip_body(server: RawReceiver, conn: socket.socket) -> None:
    server.write(conn, b"HTTP/1.1 500 Oops\r\ncontent-length: 100000\r\n\r\n")
    for _ in range(100):
        server.write(conn, b"x")
        time.sleep(1.5)


def huge_error(server: RawReceiver, conn: socket.socket) -> None:
    size = 400 * 1024 * 1024
    server.write(conn, f"HTTP/1.1 400 Bad\r\ncontent-length: {size}\r\n\r\n".encode())
    chunk = b"e" * 65536
    for _ in range(size // len(chunk)):
        server.write(conn, chunk)


@pytest.mark.parametrize("behave", [drip_headers, drip_body], ids=["headers", "body"])
def test_a_dripping_receiver_is_cut_at_the_total_deadline(behave: Callable[..., None]) -> None:
    with receiver(behave) as server:
        conf = ChannelSettings(name=f"drip-{behave.__name__}", kind="webhook", url=server.url, timeout_s=2)
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match="timed out after 2 s") as caught:
            WebhookSender(conf).send(note())
        elapsed = time.monotonic() - started
    assert caught.value.retryable
    # 2 s deadline; a per-read timeout would have waited 40 bytes x 1.5 s. Generous for a loaded machine.
    assert elapsed < 8, elapsed


def test_a_huge_error_body_is_not_read() -> None:
    with receiver(huge_error) as server:
        conf = ChannelSettings(name="huge", kind="webhook", url=server.url, timeout_s=30)
        with pytest.raises(DeliveryFailed) as caught:
            WebhookSender(conf).send(note())
        time.sleep(0.5)  # let the receiver notice the hang-up
    message = str(caught.value)
    assert message.startswith("HTTP 400: eeee") and len(message) < BODY_LIMIT
    assert not caught.value.retryable
    # what the receiver got into the socket before the sender closed: kernel buffers, not 400 MB
    assert server.sent < 40 * 1024 * 1024, server.sent


def test_one_client_per_channel_is_reused_across_sends() -> None:
    def ok(server: RawReceiver, conn: socket.socket) -> None:
        server.write(conn, b"HTTP/1.1 204 No Content\r\n\r\n")

    with receiver(ok) as server:
        conf = ChannelSettings(name="reuse", kind="webhook", url=server.url, timeout_s=5)
        client = client_for("reuse", 5)
        for _ in range(3):
            build_sender(conf).send(note())
        assert client_for("reuse", 5) is client and not client.is_closed
        assert server.connections == 3  # no keep-alive: the deadline's watchdog holds every socket
