"""The review page's signed tokens: a server secret kept in the data directory, the key derived from it and
the password, and the CSRF token every POST must repeat.

The secret is 32 random bytes in ``<data_dir>/web-secret`` (created with mode 0600 on first start). The
signing key is HMAC(secret, password): changing `web.password` rotates it, so every token, CSRF cookie and
device cookie issued under the old password stops working. Deleting the file rotates it too.

CSRF is a signed double submit: the token (issued time, nonce, signature) sits in a SameSite=Strict cookie
and in each form. A POST is refused (403) when the form's token is missing, differs from the cookie's, was
not signed by this server, is older than `CSRF_TTL_S`, or the request names another origin (an ``Origin``
of another site or ``null``, a ``Sec-Fetch-Site`` other than same-origin).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from vigil.errors import ConfigError

SECRET_FILE = "web-secret"
SECRET_BYTES = 32
CSRF_COOKIE = "vigil_csrf"
CSRF_FIELD = "csrf_token"
CSRF_TTL_S = 12 * 3600  # a form older than this asks for a reload
CSRF_RENEW_S = CSRF_TTL_S // 2  # a page shown after this gets a fresh token
CLOCK_SKEW_S = 60


def load_secret(data_dir: Path) -> bytes:
    """The server secret from `data_dir`, created on first use (0600)."""
    path = data_dir / SECRET_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_bytes()
        else:
            secret = secrets.token_bytes(SECRET_BYTES)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secret)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read or create the web secret: {exc.strerror or exc}") from exc
    if len(secret) < SECRET_BYTES:
        raise ConfigError(f"{path}: the web secret is too short; delete the file to make a new one")
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """Signs and checks the page's tokens: ``purpose.issued.nonce.signature``."""

    def __init__(self, secret: bytes, password: str | None, *, clock: object = time.time) -> None:
        self._key = hmac.new(secret, b"vigil-web\0" + (password or "").encode(), hashlib.sha256).digest()
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())  # type: ignore[operator]

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, purpose: str) -> str:
        body = f"{purpose}.{self.now()}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._mac(body)}"

    def age(self, token: object, purpose: str, *, ttl_s: int) -> int | None:
        """Seconds since this server issued `token` for `purpose`; None if it did not, or too long ago."""
        if not isinstance(token, str) or len(token) > 200:
            return None
        body, _, mac = token.rpartition(".")
        kind, _, rest = body.partition(".")
        issued, _, _ = rest.partition(".")
        if kind != purpose or not issued.isdigit():
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        age = self.now() - int(issued)
        return age if -CLOCK_SKEW_S <= age <= ttl_s else None


def secure_request(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_token(request: Request, signer: Signer) -> str:
    """The token of this browser (from its cookie) while fresh, else a new one `set_csrf_cookie` stores."""
    token = request.cookies.get(CSRF_COOKIE, "")
    age = signer.age(token, "csrf", ttl_s=CSRF_TTL_S)
    if age is None or age > CSRF_RENEW_S:
        token = request.state.__dict__.setdefault("new_csrf", signer.issue("csrf"))
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    new = request.state.__dict__.get("new_csrf")
    if new:
        response.set_cookie(
            CSRF_COOKIE, new, max_age=CSRF_TTL_S, httponly=True, samesite="strict",
            secure=secure_request(request),
        )  # fmt: skip


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (or an opaque origin)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or an old one: the token decides
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower() != ""


def csrf_ok(request: Request, form_token: object, signer: Signer) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not isinstance(form_token, str) or not cookie or not same_origin(request):
        return False
    if not hmac.compare_digest(cookie.encode(), form_token.encode()):
        return False
    return signer.age(cookie, "csrf", ttl_s=CSRF_TTL_S) is not None
