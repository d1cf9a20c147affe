"""The review page tried as an attacker would, over real HTTP against a real `python -m vigil.web`:
script smuggled in as media, DNS rebinding, forged CSRF pairs, password guessing, malformed and
out-of-range input, names that reorder text or rewrite links. Every answer in the corpus is checked too:
no 500, no traceback, no absolute path; and the headers pass Mozilla Observatory's kind of rules.

Add each new attack here (and its requests to `tests.support.attacks`); headers and the pages under their
own CSP are in test_attack_headers.py."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import httpx

from tests.support.attacks import (
    HTML,
    SVG,
    assert_clean,
    csp_directives,
    execute,
    feedback_count,
    out_of_range_corpus,
    polyglot_mp4,
    vigil_scan,
)
from tests.support.web import Review, seed_review, start_web, stop
from workers.testing.clips import write_clip_h264, write_image

PASSWORD = "correct horse"


def browser(base: str, **kwargs: object) -> tuple[httpx.Client, str]:
    """A client holding the CSRF cookie of the timeline page, and the token its forms carry."""
    client = httpx.Client(base_url=base, **kwargs)  # type: ignore[arg-type]
    page = client.get("/")
    assert page.status_code == 200, page.text
    return client, page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def media_ids(url: str) -> dict[str, int]:
    return {str(rel): int(str(i)) for rel, i in execute(url, "SELECT rel_path, id FROM media")}


# -- script in the page's origin --------------------------------------------------------------------------


def test_dropped_files_are_served_only_as_the_media_their_row_registered(
    review: Review, tmp_path: Path
) -> None:
    cam, clip = review.seeded.source_dir, review.seeded.clip
    (cam / "poly.html").write_bytes(polyglot_mp4())
    (cam / "poly.mp4").symlink_to("poly.html")  # a link to HTML whose bytes chain as MP4 boxes
    (cam / "poly2.mp4").write_bytes(polyglot_mp4())  # the same bytes under a video name
    shutil.copy(clip, cam / "swap.mp4")
    write_clip_h264(cam / "other.mp4", seconds=3.0, fps=10, size=(160, 120), gop=10)
    (cam / "page.html").write_bytes(HTML)
    (cam / "vector.svg").write_bytes(SVG)
    report = vigil_scan(review.db_url, tmp_path, cam, "cam1")
    ids = media_ids(review.db_url)
    assert {"poly.mp4", "poly2.mp4", "swap.mp4", "other.mp4"} <= set(ids), report

    def get(name: str) -> httpx.Response:
        response = httpx.get(f"{review.base}/media/{ids[name]}/file")
        assert_clean(response, str(tmp_path))
        assert not response.headers.get("content-type", "").startswith(("text/html", "image/svg"))
        return response

    assert get("poly.mp4").status_code == 404  # the link's target is no media file Vigil reads
    served = get("poly2.mp4")  # an MP4 by its bytes: served as one, and never run
    assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
    assert "sandbox" in csp_directives(served) and served.headers["x-content-type-options"] == "nosniff"

    swap = cam / "swap.mp4"
    registered = swap.stat()
    assert get("swap.mp4").status_code == 200
    for target in ("page.html", "vector.svg", "other.mp4"):
        swap.unlink()
        swap.symlink_to(target)  # swapped for a link inside the folder after registration
        assert get("swap.mp4").status_code in (404, 410), target  # 410: another version now
    swap.unlink()
    swap.write_bytes(HTML.ljust(registered.st_size, b" "))  # same size and mtime, HTML bytes
    os.utime(swap, ns=(registered.st_atime_ns, registered.st_mtime_ns))
    assert get("swap.mp4").status_code in (404, 410)
    shutil.copy(clip, swap)
    os.utime(swap, ns=(registered.st_atime_ns, registered.st_mtime_ns))
    assert get("swap.mp4").status_code == 200  # the registered file again: served again

    thumbs = review.seeded.thumbnails_dir
    (thumbs / "evil.jpg").write_bytes(HTML)
    detection = review.seeded.alert_detection_id
    execute(
        review.db_url,
        "UPDATE detections SET thumbnail_path = :p WHERE id = :d",
        p=str(thumbs / "evil.jpg"),
        d=detection,
    )
    response = httpx.get(f"{review.base}/detections/{detection}/thumbnail")
    assert response.status_code == 404
    assert_clean(response, str(tmp_path))


def test_reference_images_are_served_only_as_the_rasters_they_were_checked_as(review: Review) -> None:
    refs = review.seeded.thumbnails_dir.parent / "references"
    refs.mkdir(parents=True, exist_ok=True)
    good = write_image(refs / "tmp.png", size=(64, 48)).read_bytes()
    images = []
    for name, data in [
        ("good.png", good),
        ("x.svg", SVG),
        ("x.html", HTML),
        ("html.png", HTML),
        ("bad.png", good),
    ]:
        digest = hashlib.sha256(data).hexdigest()
        stored = digest + Path(name).suffix
        (refs / stored).write_bytes(data)
        images.append({"sha256": digest if name != "bad.png" else "0" * 64, "file": stored, "name": name})
    execute(review.db_url, "UPDATE targets SET images = :j WHERE name = 'person'", j=json.dumps(images))
    answers = [httpx.get(f"{review.base}/targets/person/images/{i}") for i in range(len(images))]
    assert [a.status_code for a in answers] == [200, 404, 404, 404, 404]
    assert answers[0].headers["content-type"] == "image/png" and answers[0].content == good
    assert "sandbox" in csp_directives(answers[0])


# -- DNS rebinding and forged POSTs -----------------------------------------------------------------------


def test_a_foreign_host_name_reads_and_writes_nothing(review: Review, tmp_path: Path) -> None:
    evil = {"Host": "rebind.attacker.example"}
    media = review.seeded.media_id
    for path in ["/", f"/media/{media}", f"/media/{media}/file", "/targets", "/static/vigil.js", "/nothing"]:
        response = httpx.get(review.base + path, headers=evil)
        assert response.status_code == 400 and "allowed_hosts" in response.text, path
        assert_clean(response)
    client, token = browser(review.base)
    before = feedback_count(review.db_url)
    form = {"detection_id": str(review.seeded.alert_detection_id), "verdict": "wrong", "csrf_token": token}
    response = client.post(
        "/feedback", data=form, headers=evil | {"Origin": "http://rebind.attacker.example"}
    )
    assert response.status_code == 400 and feedback_count(review.db_url) == before
    port = review.base.rsplit(":", 1)[1]
    for host in [f"localhost:{port}", f"127.0.0.1:{port}", f"LOCALHOST:{port}"]:
        assert httpx.get(review.base + "/", headers={"Host": host}).status_code == 200, host
    client.close()
    env = {"VIGIL_WEB__ALLOWED_HOSTS": '["vigil.example.org"]'}
    process, base, _ = start_web(tmp_path, review.db_url, env=env, argv=("-m", "vigil", "web"))
    try:
        assert httpx.get(base + "/", headers={"Host": "vigil.example.org"}).status_code == 200
        assert httpx.get(base + "/", headers={"Host": f"localhost:{port}"}).status_code == 400
    finally:
        stop(process)


def test_csrf_pairs_the_server_did_not_issue_are_refused(review: Review, tmp_path: Path) -> None:
    before = feedback_count(review.db_url)
    verdict = {"detection_id": str(review.seeded.alert_detection_id), "verdict": "wrong"}
    now = int(time.time())
    for made_up in ["x" * 43, f"csrf.{now}.nonce.{'A' * 43}", f"csrf.{now}.nonce"]:
        forged = httpx.post(
            review.base + "/feedback", data=verdict | {"csrf_token": made_up},
            cookies={"vigil_csrf": made_up}, headers={"Origin": "null"},
        )  # fmt: skip
        assert forged.status_code == 403, made_up
        assert_clean(forged)
    client, token = browser(review.base)
    (cookie,) = httpx.get(review.base + "/targets").headers.get_list("set-cookie")
    max_age = re.search(r"Max-Age=(\d+)", cookie, re.IGNORECASE)
    assert max_age is not None and int(max_age[1]) <= 12 * 3600, cookie  # not a year any more
    for headers in [{"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}]:
        forged = client.post("/feedback", data=verdict | {"csrf_token": token}, headers=headers)
        assert forged.status_code == 403, headers
    assert feedback_count(review.db_url) == before
    # A pair issued before the password changed is refused after it (the key is derived from it).
    process, base, _ = start_web(tmp_path, review.db_url, env={"VIGIL_WEB__PASSWORD": PASSWORD})
    try:
        stale_client = httpx.Client(base_url=base, auth=("me", PASSWORD), cookies={"vigil_csrf": token})
        stale = stale_client.post("/feedback", data=verdict | {"csrf_token": token})
        stale_client.close()
        assert stale.status_code == 403 and feedback_count(review.db_url) == before
        fresh, fresh_token = browser(base, auth=("me", PASSWORD))
        ok = fresh.post("/feedback", data=verdict | {"csrf_token": fresh_token})
        assert ok.status_code == 303 and feedback_count(review.db_url) == before + 1  # type: ignore[operator]
        fresh.close()
    finally:
        stop(process)
    assert client.post("/feedback", data=verdict | {"csrf_token": token}).status_code == 303
    client.close()


def test_password_guessing_is_throttled_and_the_owner_still_gets_in(sqlite_url: str, tmp_path: Path) -> None:
    seed_review(sqlite_url, tmp_path)
    process, base, _ = start_web(
        tmp_path, sqlite_url, env={"VIGIL_WEB__PASSWORD": PASSWORD}, argv=("-m", "vigil", "web")
    )
    try:
        owner = httpx.Client(base_url=base, auth=("me", PASSWORD))
        assert owner.get("/").status_code == 200 and owner.cookies.get("vigil_device")
        started = time.monotonic()
        statuses, waits = [], []
        attacker = httpx.Client(base_url=base)
        for i in range(150):
            response = attacker.get("/", auth=("me", f"guess-{i}"))
            statuses.append(response.status_code)
            if response.status_code == 429:
                waits.append(int(response.headers["retry-after"]))
                assert_clean(response)
        elapsed = time.monotonic() - started
        assert set(statuses) == {401, 429} and statuses[:5] == [401] * 5, statuses
        # 5 free guesses, then one per lock, each lock twice the last: 1 s, 2 s, 4 s ...
        assert statuses.count(401) <= 6 + math.log2(elapsed + 1) + 1, (statuses.count(401), elapsed)
        assert all(1 <= w <= 300 for w in waits)
        # Keep guessing, waiting out each lock, until one lasts at least 4 s (1 s, 2 s, then 4 s).
        while True:
            response = attacker.get("/", auth=("me", "one-more-guess"))
            if response.status_code == 429 and int(response.headers["retry-after"]) >= 4:
                break
            time.sleep(int(response.headers.get("retry-after", "0")))
        attacker.close()
        # Locked: even the right password is not tried from this address (no oracle) ...
        locked = httpx.get(base + "/", auth=("me", PASSWORD))
        assert locked.status_code == 429
        # ... but the owner's browser, known by its device cookie, is not locked out.
        assert owner.get("/targets").status_code == 200
        time.sleep(int(locked.headers["retry-after"]) + 0.2)
        assert httpx.get(base + "/", auth=("me", PASSWORD)).status_code == 200  # the lock ends
        print(
            f"150 wrong passwords in {elapsed:.2f} s:",
            f"{statuses.count(401)} x 401, {statuses.count(429)} x 429",
        )
        owner.close()
    finally:
        stop(process)


# -- malformed input, 500s, leaks -------------------------------------------------------------------------


def test_malformed_and_out_of_range_input_is_a_short_4xx(review: Review, tmp_path: Path) -> None:
    client, token = browser(review.base)
    before = feedback_count(review.db_url)
    corpus = out_of_range_corpus(review.seeded.media_id, review.seeded.alert_detection_id)
    for method, path, form in corpus:
        data = form | {"csrf_token": token} if method == "POST" else None
        response = client.request(method, path, data=data)
        assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text[:200])
        assert_clean(response, str(tmp_path))
    junk = client.post(
        "/feedback", content=b"--x\r\nContent-Disposition: form-data; name=\"a\r\n\r\n--",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )  # fmt: skip
    assert 400 <= junk.status_code < 500
    assert_clean(junk, str(tmp_path))
    for header in ["bytes=99999999999999999999999-", "bytes=abc", "bytes=5-1", "bytes=" + "0-1," * 200]:
        ranged = client.get(f"/media/{review.seeded.media_id}/file", headers={"Range": header})
        assert ranged.status_code in (200, 206, 400, 416), header
        assert_clean(ranged, str(tmp_path))
    undecodable = client.get("/?target=%ff%fe")  # not UTF-8: no such target, an empty page
    assert undecodable.status_code == 200
    assert_clean(undecodable, str(tmp_path))
    assert feedback_count(review.db_url) == before
    if review.db_url.startswith("sqlite"):  # PostgreSQL's text cannot hold a NUL
        execute(
            review.db_url,
            "UPDATE media SET path = path || char(0) || 'x' WHERE id = :m",
            m=review.seeded.media_id,
        )
        page = client.get(f"/media/{review.seeded.media_id}")
        assert page.status_code == 200
        assert_clean(page, str(tmp_path))
        clip = client.get(f"/media/{review.seeded.media_id}/file")
        assert clip.status_code == 404
        assert_clean(clip, str(tmp_path))
    client.close()


def test_the_media_page_shows_no_file_system_path_or_raw_error(review: Review, tmp_path: Path) -> None:
    clip = review.seeded.clip
    error = (
        'Traceback (most recent call last):\n  File "/srv/app/x.py"\n'
        f"UnreadableMedia: {clip}: cannot open /srv/cams/secret/y.mp4"
    )
    execute(
        review.db_url,
        "UPDATE media SET status = 'failed', error = :e WHERE id = :m",
        e=error,
        m=review.seeded.media_id,
    )
    execute(
        review.db_url,
        "UPDATE deliveries SET last_error = 'HTTP 503 from https://u:tok3n@hooks.example.org/h?key=SECRET'",
    )
    page = httpx.get(f"{review.base}/media/{review.seeded.media_id}")
    assert page.status_code == 200
    assert_clean(page, str(tmp_path), "/srv/", "tok3n", "SECRET", "Traceback")
    assert "cam1/driveway.mp4" in page.text and "cannot open …/y.mp4" in page.text
    timeline = httpx.get(review.base + "/")
    assert_clean(timeline, str(tmp_path), "tok3n", "SECRET")


def test_names_cannot_reorder_text_or_rewrite_links(review: Review) -> None:
    weird = "x?a=1#/../../feedback/threshold"
    execute(
        review.db_url,
        "INSERT INTO targets (name, description, threshold, enabled, prompt_version, images, created_at, "
        "updated_at) SELECT :n, 'odd', 0.5, enabled, prompt_version, :i, created_at, updated_at FROM targets "
        "WHERE name = 'person'",
        n=weird, i=json.dumps([{"sha256": "0" * 64, "file": "a.png", "name": "pic\u202egnp.exe"}]),
    )  # fmt: skip
    execute(
        review.db_url,
        "UPDATE media SET rel_path = :r WHERE id = :m",
        r="report\u202efdp.mp4",
        m=review.seeded.media_id,
    )
    execute(review.db_url, "UPDATE sources SET name = :s", s="cam\u2067one")
    for path in ["/", "/targets", f"/media/{review.seeded.media_id}"]:
        page = httpx.get(review.base + path)
        assert page.status_code == 200
        assert not re.search("[\u202a-\u202e\u2066-\u2069]", page.text), path
    media = httpx.get(f"{review.base}/media/{review.seeded.media_id}").text
    assert "report&lt;U+202E&gt;fdp.mp4" in media and "cam&lt;U+2067&gt;one" in media
    targets = httpx.get(review.base + "/targets").text
    assert 'src="/targets/x%3Fa%3D1%23%2F..%2F..%2Ffeedback%2Fthreshold/images/0"' in targets
    # The encoded segment comes back as the name: the threshold route, never /feedback.
    client, token = browser(review.base)
    before = feedback_count(review.db_url)
    response = client.post(
        "/targets/x%3Fa%3D1%23%2F..%2F..%2Ffeedback%2Fthreshold/threshold",
        data={"threshold": "0.7", "csrf_token": token},
    )
    assert response.status_code == 303 and feedback_count(review.db_url) == before
    assert execute(review.db_url, "SELECT threshold FROM targets WHERE name = :n", n=weird) == [(0.7,)]
    client.close()
