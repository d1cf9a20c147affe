"""A real SMTP server (aiosmtpd) on loopback for the email channel's tests.

Its port is chosen free, then bound by the server a moment later. ``free_port`` draws below the kernel's
ephemeral range, so no port-0 bind can take it in between (CI once hit that), but another explicit bind
still can. When the server's bind fails, aiosmtpd leaves its event loop open, which a later test reports as
an unclosed resource; so a refused bind closes that loop and tries another port.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.services import free_port

BIND_ATTEMPTS = 5


class SmtpHandler:
    """Keeps every message's bytes and answers DATA with ``reply``."""

    def __init__(self, reply: str = "250 Message accepted") -> None:
        self.reply = reply
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return self.reply


@contextmanager
def smtp_server(handler: SmtpHandler) -> Iterator[int]:
    """Serve ``handler`` on a free loopback port for the block; yields the port."""
    from aiosmtpd.controller import Controller

    for attempt in range(1, BIND_ATTEMPTS + 1):
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        try:
            controller.start()
            break
        except OSError as exc:
            if controller._thread is not None:  # the server thread ended at its failed bind
                controller._thread.join()
            controller.loop.close()
            if exc.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS:
                raise
    try:
        yield port
    finally:
        controller.stop()
