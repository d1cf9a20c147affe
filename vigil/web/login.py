"""The password door: HTTP Basic (any user name) on every request when `web.password` is set, with wrong
passwords throttled per client address.

A client address gets `FREE_FAILURES` wrong passwords; each further one locks it for twice as long as the
last (1 s, 2 s, 4 s … at most `MAX_LOCK_S`), answered 429 with ``Retry-After`` without looking at the
password. An address that stays quiet for `FORGET_S` starts afresh. The owner is never locked out for
good: a browser that once logged in carries a signed device cookie, and its failures are counted on the
cookie, not on the address an attacker may share; and no lock outlasts `MAX_LOCK_S`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vigil.web.security import Signer, secure_request

DEVICE_COOKIE = "vigil_device"
DEVICE_TTL_S = 30 * 86400
FREE_FAILURES = 5
MAX_LOCK_S = 300.0
FORGET_S = 900.0
MAX_CLIENTS = 10_000  # remembered at once; the quietest are forgotten first


@dataclass
class _Client:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class Throttle:
    """Wrong-password counts per key (a client address, or a device cookie)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def _get(self, key: str) -> _Client:
        now = self.clock()
        client = self._clients.pop(key, None)
        if client is None or now - client.last > FORGET_S:
            client = _Client()
        client.last = now
        self._clients[key] = client
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        return client

    def wait_s(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        client = self._clients.get(key)
        return 0.0 if client is None else max(0.0, client.locked_until - self.clock())

    def failed(self, key: str) -> None:
        client = self._get(key)
        client.failures += 1
        if client.failures > FREE_FAILURES:
            lock = min(MAX_LOCK_S, 2.0 ** (client.failures - FREE_FAILURES - 1))
            client.locked_until = client.last + lock

    def succeeded(self, key: str) -> None:
        self._clients.pop(key, None)


def given_password(request: Request) -> bytes | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded, validate=True).partition(b":")[2]
    except (binascii.Error, ValueError):
        return b""


class BasicAuth:
    """ASGI middleware: every request needs the password when one is configured."""

    def __init__(self, app: ASGIApp, *, password: str, signer: Signer, throttle: Throttle) -> None:
        self.app, self.password, self.signer, self.throttle = app, password.encode(), signer, throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        device = request.cookies.get(DEVICE_COOKIE, "")
        known = self.signer.age(device, "device", ttl_s=DEVICE_TTL_S) is not None
        key = f"device:{device}" if known else f"addr:{request.client.host if request.client else '-'}"
        wait = self.throttle.wait_s(key)
        if wait > 0:
            response = PlainTextResponse(
                f"too many wrong passwords: try again in {math.ceil(wait)} s\n",
                status_code=429, headers={"Retry-After": str(math.ceil(wait))},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        given = given_password(request)
        if given is None or not hmac.compare_digest(given, self.password):
            if given is not None:
                self.throttle.failed(key)
            response = PlainTextResponse(
                "password required\n", status_code=401, headers={"WWW-Authenticate": 'Basic realm="vigil"'}
            )
            await response(scope, receive, send)
            return
        self.throttle.succeeded(key)
        if known:
            await self.app(scope, receive, send)
            return
        cookie = self._device_cookie(secure_request(request))

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, with_cookie)

    def _device_cookie(self, secure: bool) -> str:
        value = self.signer.issue("device")
        flags = "; Secure" if secure else ""
        return f"{DEVICE_COOKIE}={value}; Max-Age={DEVICE_TTL_S}; Path=/; HttpOnly; SameSite=Strict{flags}"
