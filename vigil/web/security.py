"""The review page's doors: HTTP Basic when a password is set, and a CSRF token on every POST.

CSRF is the double-submit pattern: a random token in a SameSite=Strict cookie, repeated in each form; a
POST whose form token is missing or differs from the cookie's is refused (403), as is one whose Origin
names another site.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

CSRF_COOKIE = "vigil_csrf"
CSRF_FIELD = "csrf_token"


class BasicAuth:
    """ASGI middleware: every request needs the password (any user name) when one is configured."""

    def __init__(self, app: ASGIApp, *, password: str) -> None:
        self.app, self.password = app, password.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(Request(scope)):
            response = PlainTextResponse(
                "password required", status_code=401, headers={"WWW-Authenticate": 'Basic realm="vigil"'}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _, _, given = base64.b64decode(encoded, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.password)


def csrf_token(request: Request) -> str:
    """The token of this browser (from its cookie), or a new one that `set_csrf_cookie` will store."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) < 32:
        token = request.state.__dict__.setdefault("new_csrf", secrets.token_urlsafe(32))
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    new = request.state.__dict__.get("new_csrf")
    if new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", max_age=365 * 86400)


def csrf_ok(request: Request, form_token: object) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if len(cookie) < 32 or not isinstance(form_token, str):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        return False
    return hmac.compare_digest(cookie, form_token)
