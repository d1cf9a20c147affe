"""What the review page lets a request do: read pages, serve registered files by id, take a verdict or a
threshold with a CSRF token. Nothing else — an attacker's corpus of paths, forged POSTs, other methods,
and binding off loopback without a password."""

from __future__ import annotations

import html
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.support.web import Review, bulk_detections, judge_bulk, start_web, stop

TRAVERSALS = [
    "/media/../../../../etc/passwd",
    "/media/%2e%2e/%2e%2e/etc/passwd",
    "/media/..%2f..%2fetc%2fpasswd/file",
    "/media/1/../../../etc/passwd",
    "/media/%2Fetc%2Fpasswd/file",
    "/media/1/file/../../../../etc/passwd",
    "/media/-1/file",
    "/media/999999/file",
    "/media/1e3/file",
    "/detections/999999/thumbnail",
    "/detections/..%2f..%2fetc%2fpasswd/thumbnail",
    "//etc/passwd",
    "/static/../../etc/passwd",
    "/etc/passwd",
]


def execute(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def counts(url: str) -> tuple[object, ...]:
    (row,) = execute(url, "SELECT (SELECT COUNT(*) FROM feedback), (SELECT SUM(threshold) FROM targets)")
    return row


def test_no_path_from_the_request_is_served(review: Review) -> None:
    for path in TRAVERSALS:
        response = httpx.get(review.base + path)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert b"root:" not in response.content
    # A path in the query string is ignored: the id's registered file is what comes back.
    response = httpx.get(f"{review.base}/media/{review.seeded.media_id}/file?path=/etc/passwd")
    assert response.content == review.seeded.clip.read_bytes()


def test_registered_media_are_served_by_id_with_ranges(review: Review) -> None:
    url = f"{review.base}/media/{review.seeded.media_id}/file"
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == review.seeded.clip.read_bytes()
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"


def test_a_row_pointing_outside_its_folder_is_refused(review: Review, tmp_path: Path) -> None:
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not for the page")
    # A media row whose path leaves its source folder, one whose file became a symlink out of it, and a
    # thumbnail path outside the thumbnails folder: all refused.
    execute(review.db_url, f"UPDATE media SET path = '{secret}' WHERE id = {review.seeded.media_id}")
    assert httpx.get(f"{review.base}/media/{review.seeded.media_id}/file").status_code == 404
    link = review.seeded.source_dir / "link.mp4"
    link.symlink_to(secret)
    execute(review.db_url, f"UPDATE media SET path = '{link}' WHERE id = {review.seeded.media_id}")
    assert httpx.get(f"{review.base}/media/{review.seeded.media_id}/file").status_code == 404
    detection = review.seeded.alert_detection_id
    execute(review.db_url, f"UPDATE detections SET thumbnail_path = '{secret}' WHERE id = {detection}")
    assert httpx.get(f"{review.base}/detections/{detection}/thumbnail").status_code == 404


def session_with_token(review: Review) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=review.base)
    page = client.get("/")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.cookies.get("vigil_csrf") == token
    return client, token


def test_posts_need_the_csrf_token(review: Review) -> None:
    before = counts(review.db_url)
    client, token = session_with_token(review)
    verdict = {"detection_id": str(review.seeded.alert_detection_id), "verdict": "wrong"}
    threshold = {"threshold": "0.05"}
    forged = [
        ("/feedback", verdict, {}),  # no token at all
        ("/feedback", verdict | {"csrf_token": "x" * 43}, {}),  # a token, not this browser's
        ("/feedback", verdict | {"csrf_token": token}, {"Origin": "http://evil.example"}),  # another site
        ("/targets/person/threshold", threshold, {}),
        ("/targets/person/threshold", threshold | {"csrf_token": token + "x"}, {}),
    ]
    for path, form, headers in forged:
        response = client.post(path, data=form, headers=headers)
        assert response.status_code == 403, (path, form, headers)
        assert "CSRF" in response.text
    bare = httpx.post(review.base + "/feedback", data=verdict | {"csrf_token": token})  # token, no cookie
    assert bare.status_code == 403
    assert counts(review.db_url) == before
    ok = client.post("/feedback", data=verdict | {"csrf_token": token, "next": "//evil.example/x"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # never redirected off-site
    assert counts(review.db_url)[0] == before[0] + 1
    client.close()


def test_bad_posts_get_one_line_and_write_nothing(review: Review) -> None:
    client, token = session_with_token(review)
    before = counts(review.db_url)
    for form in [
        {"detection_id": "abc", "verdict": "wrong"},
        {"detection_id": "999999", "verdict": "wrong"},
        {"detection_id": str(review.seeded.alert_detection_id), "verdict": "maybe"},
        {
            "detection_id": str(review.seeded.matched_ids[0]),
            "verdict": "right",
            "alert_id": str(review.seeded.alert_id),
        },
    ]:
        response = client.post("/feedback", data=form | {"csrf_token": token})
        assert response.status_code == 400 and response.text.count("\n") == 1, (form, response.text)
    for value in ["abc", "1.5", "-0.1", "nan"]:
        response = client.post("/targets/person/threshold", data={"threshold": value, "csrf_token": token})
        assert response.status_code == 400, value
    assert (
        client.post("/targets/nobody/threshold", data={"threshold": "0.5", "csrf_token": token}).status_code
        == 400
    )
    assert counts(review.db_url) == before
    client.close()


def test_only_feedback_and_threshold_accept_writes(review: Review) -> None:
    before = counts(review.db_url)
    for method in ["PUT", "DELETE", "PATCH"]:
        for path in [
            "/",
            "/feedback",
            f"/media/{review.seeded.media_id}",
            "/targets",
            "/targets/person/threshold",
        ]:
            assert httpx.request(method, review.base + path).status_code == 405, (method, path)
    for path in ["/", f"/media/{review.seeded.media_id}", "/targets", "/?feedback=none&alerts=1"]:
        assert httpx.get(review.base + path).status_code == 200
        assert httpx.post(review.base + path).status_code in (403, 405)
    for bad in [
        "/?min_score=abc",
        "/?since=yesterday",
        "/?feedback=maybe",
        "/?before=x",
        "/targets?precision=2",
    ]:
        response = httpx.get(review.base + bad)
        assert response.status_code == 400 and response.text.count("\n") == 1, bad
    assert counts(review.db_url) == before


def test_threshold_applies_to_a_cli_target_with_the_token(review: Review) -> None:
    client, token = session_with_token(review)
    response = client.post("/targets/van/threshold", data={"threshold": "0.655", "csrf_token": token})
    assert response.status_code == 303
    assert execute(review.db_url, "SELECT threshold FROM targets WHERE name = 'van'") == [(0.655,)]
    client.close()


def test_a_password_guards_every_page(review: Review, tmp_path: Path) -> None:
    process, base, _ = start_web(tmp_path, review.db_url, env={"VIGIL_WEB__PASSWORD": "correct horse"})
    try:
        for path in ["/", "/targets", f"/media/{review.seeded.media_id}/file"]:
            assert httpx.get(base + path).status_code == 401
            assert httpx.get(base + path, auth=("x", "wrong")).status_code == 401
            assert httpx.get(base + path, auth=("anyone", "correct horse")).status_code == 200
    finally:
        stop(process)


def test_binding_off_loopback_without_a_password_is_refused_at_start(sqlite_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_DATABASE__URL": sqlite_url
    }
    for argv in (["-m", "vigil", "web", "--host", "0.0.0.0"], ["-m", "vigil.web"]):
        run_env = env if argv[1] == "vigil" else env | {"VIGIL_WEB__HOST": "0.0.0.0"}
        result = subprocess.run(
            [sys.executable, *argv], env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, result
        assert "host 0.0.0.0 is not a loopback address: set web.password" in result.stderr


def test_a_target_owned_by_the_settings_file_shows_its_line_and_refuses_apply(
    review: Review, tmp_path: Path
) -> None:
    bulk_detections(review.db_url, 2_000)
    judge_bulk(review.db_url)
    owned = '[{"name": "van", "description": "a white delivery van", "threshold": 0.6}]'
    process, base, _ = start_web(tmp_path, review.db_url, env={"VIGIL_TARGETS": owned})
    try:
        page = html.unescape(httpx.get(base + "/targets").text)
        van = page.split('data-target="van"', 1)[1].split('class="card target"', 1)[0]
        assert (
            "is set in the settings file" in van
            and '[[targets]] name = "van"' in van
            and "threshold = 0." in van
        )
        assert 'action="/targets/van/threshold"' not in van
        assert 'action="/targets/person/threshold"' in page  # a CLI target gets the button
        client, token = session_with_token(Review(base, review.db_url, review.seeded, process, review.log))
        refused = client.post("/targets/van/threshold", data={"threshold": "0.7", "csrf_token": token})
        assert refused.status_code == 400 and "change it there" in refused.text
        assert execute(review.db_url, "SELECT threshold FROM targets WHERE name = 'van'") == [(0.6,)]
        client.close()
    finally:
        stop(process)
