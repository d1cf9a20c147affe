"""The review page's outer doors, as ASGI middleware, before any route runs:

- `HostGuard`: the ``Host`` header must name this page (`web.allowed_hosts`; DNS rebinding), and the
  address must hold no NUL or other control character (it would reach SQL or the file system);
- `SecurityHeaders`: every response says what the browser may do with it: a Content-Security-Policy
  (`PAGE_CSP` for pages; file routes set the sandboxing `FILE_CSP`), nosniff, no framing, the referrer
  kept to this site, resources and windows not shared with other origins; ``Cache-Control: no-store`` on
  pages (they carry CSRF tokens) and on everything when a password guards the page.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style: the pages' script and stylesheet are /static/vigil.js and /static/vigil.css.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# A served file is never a document that runs anything, whatever its bytes hold.
FILE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox; frame-ancestors 'none'"
ALWAYS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}
CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def host_name(host: str) -> str:
    """The name part of a Host header (lower case, port dropped, an IPv6 address kept in brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class HostGuard:
    def __init__(self, app: ASGIApp, *, allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._problem(scope)
            if problem:
                await PlainTextResponse(f"400: {problem}\n", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope) -> str | None:
        host = Headers(scope=scope).get("host")
        if host is None:
            return "a Host header is required"
        if "*" not in self.allowed and host_name(host) not in self.allowed:
            return f"host {host[:100]!r} is not one this page answers to (web.allowed_hosts)"
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        query = scope["query_string"]
        if CONTROL.search(unquote_to_bytes(raw_path)) or CONTROL.search(unquote_to_bytes(query)):
            return "the address holds a control character"
        return None


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, authenticated: bool) -> None:
        self.app, self.authenticated = app, authenticated

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers[name] = value
                if "content-security-policy" not in headers:
                    headers["content-security-policy"] = PAGE_CSP
                page = headers.get("content-type", "").startswith("text/html")
                if self.authenticated or page:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
