"""What an attacker sends the review page, and what every answer must look like: the files a camera
account can drop into a watched folder (an MP4 with HTML inside, links swapped after registration), the
corpus of malformed and out-of-range requests, and the header rules of Mozilla Observatory's kind."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

HTML = b"<!doctype html><html><body><script>document.title = 'pwned'</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
MAX_ID = 2**63 - 1
REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def polyglot_mp4() -> bytes:
    """An ISO BMFF box chain (ftyp, mdat) whose mdat holds an HTML page with a script."""
    return box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + box(b"mdat", HTML)


def execute(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def feedback_count(url: str) -> object:
    return execute(url, "SELECT COUNT(*) FROM feedback")[0][0]


def vigil_scan(db_url: str, root: Path, folder: Path, source: str) -> str:
    """`vigil scan FOLDER --source NAME`, as an operator runs it; its report line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_DATABASE__URL": db_url,
        "VIGIL_STORAGE__DATA_DIR": str(root / "data"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "vigil", "scan", str(folder), "--source", source],
        env=env, cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stderr


def out_of_range_corpus(media_id: int, detection_id: int) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, form) requests whose ids, numbers, dates or bytes are malformed or out of range."""
    big, over = "9" * 20, str(MAX_ID + 1)
    gets = [
        f"/media/{big}", f"/media/{big}/file", f"/media/{over}", f"/media/{over}/file", "/media/0",
        f"/media/{media_id}?analysis={big}", f"/media/{media_id}?analysis=-1",
        f"/media/{media_id}?analysis=x",
        f"/detections/{big}/thumbnail", f"/detections/{over}/thumbnail", f"/targets/person/images/{big}",
        f"/?before={over}", f"/?before={big}", "/?before=-1", "/?before=0", "/?before=1e3",
        "/?since=0001-01-01T00:00:00%2B14:00", "/?until=9999-12-31T23:59:59-14:00", "/?since=2026-13-45",
        "/?min_score=1e999", "/?min_score=-1e999", "/?min_score=nan",
        "/?target=%00", "/?source=%00x", f"/media/{media_id}%00", "/targets/%00/images/0",
        "/targets?precision=1e999", "/targets?precision=abc", "/?feedback=%00",
    ]  # fmt: skip
    posts = [
        ("/feedback", {"detection_id": str(10**20), "verdict": "wrong"}),
        ("/feedback", {"detection_id": over, "verdict": "wrong"}),
        ("/feedback", {"detection_id": "-5", "verdict": "wrong"}),
        ("/feedback", {"detection_id": "1e3", "verdict": "wrong"}),
        ("/feedback", {"detection_id": "٣", "verdict": "wrong"}),  # an Arabic-Indic digit
        ("/feedback", {"detection_id": str(detection_id), "alert_id": big, "verdict": "wrong"}),
        ("/feedback", {"detection_id": str(detection_id), "verdict": "wrong", "note": "a\x00b"}),
        ("/feedback", {"detection_id": str(detection_id), "verdict": "wrong", "note": "x" * 5000}),
        ("/targets/person/threshold", {"threshold": "1e400"}),
        ("/targets/person/threshold", {"threshold": ""}),
        ("/targets/nobody%2F..%2F..%2Ffeedback/threshold", {"threshold": "0.5"}),
    ]
    return [("GET", path, {}) for path in gets] + [("POST", path, form) for path, form in posts]


def assert_clean(response: httpx.Response, *secrets: str) -> None:
    """No 500, no traceback, no absolute path of this machine in the body or headers."""
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:300]}"
    body = response.content.decode("utf-8", "replace")
    heads = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    assert "Traceback" not in body and 'File "/' not in body, where
    for secret in secrets:
        assert secret not in body and secret not in heads, f"{where} shows {secret!r}"
    if 400 <= response.status_code < 500 and response.headers.get("content-type", "").startswith(
        "text/plain"
    ):
        assert body.count("\n") <= 1 and len(body) <= 400, f"{where}: not one short line: {body!r}"


def csp_directives(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers.get("content-security-policy", "")
    parts = [p.strip().split() for p in policy.split(";") if p.strip()]
    return {p[0].lower(): p[1:] for p in parts}


def observatory_problems(response: httpx.Response) -> list[str]:
    """What Mozilla Observatory's header tests would hold against a page (an empty list: it passes)."""
    problems = []
    csp = csp_directives(response)
    if "default-src" not in csp:
        problems.append("CSP without default-src")
    scripts = csp.get("script-src", csp.get("default-src", []))
    if any(s in scripts for s in ("'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:", "data:")):
        problems.append(f"CSP script-src allows {scripts}")
    objects = csp.get("object-src", csp.get("default-src", []))
    if objects != ["'none'"]:
        problems.append(f"CSP object-src is {objects}, not 'none'")
    if csp.get("frame-ancestors") not in (["'none'"], ["'self'"]):
        problems.append("no frame-ancestors 'none' or 'self'")
    if response.headers.get("x-content-type-options", "").lower() != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    if response.headers.get("referrer-policy", "").lower() not in REFERRER_POLICIES:
        problems.append(f"referrer policy {response.headers.get('referrer-policy')!r}")
    if response.headers.get("x-frame-options", "").upper() not in ("DENY", "SAMEORIGIN"):
        problems.append("no X-Frame-Options")
    for cookie in response.headers.get_list("set-cookie"):
        flags = cookie.lower()
        if "httponly" not in flags or "samesite=strict" not in flags:
            problems.append(f"cookie without HttpOnly/SameSite=Strict: {cookie.split('=')[0]}")
    return problems
