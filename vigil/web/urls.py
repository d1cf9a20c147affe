"""The review page's addresses, in one place: the routes use these paths and alert payloads link to them.

Everything is addressed by row id or a target's name; no address carries a file path. A name is quoted
as one path segment (every reserved character, "/" included, is percent-encoded).
"""

from __future__ import annotations

from urllib.parse import quote

MEDIA_PAGE = "/media/{media_id}"
EVENTS_PAGE = "/events"  # alerts on Vigil's own events (camera offline, disk pressure)
MEDIA_FILE = "/media/{media_id}/file"
DETECTION_THUMBNAIL = "/detections/{detection_id}/thumbnail"
TARGET_THRESHOLD = "/targets/{name:path}/threshold"
REFERENCE_IMAGE = "/targets/{name:path}/images/{index}"


def media_page_path(media_id: int) -> str:
    return MEDIA_PAGE.format(media_id=int(media_id))


def media_file_path(media_id: int) -> str:
    return MEDIA_FILE.format(media_id=int(media_id))


def thumbnail_path(detection_id: int) -> str:
    return DETECTION_THUMBNAIL.format(detection_id=int(detection_id))


def segment(value: object) -> str:
    """`value` as one URL path segment."""
    return quote(str(value), safe="")


def target_threshold_path(name: str) -> str:
    return TARGET_THRESHOLD.replace("{name:path}", segment(name))


def reference_image_path(name: str, index: int) -> str:
    return REFERENCE_IMAGE.replace("{name:path}", segment(name)).format(index=int(index))


def absolute_url(base_url: str | None, path: str) -> str | None:
    """`path` under `web.base_url`, or None when no base URL is configured (payloads then omit links)."""
    if not base_url:
        return None
    return base_url.rstrip("/") + path


def media_links(base_url: str | None, *, media_id: int, detection_id: int | None) -> dict[str, str]:
    """The links an alert payload carries: `media_url` (the media page) and `thumbnail_url`, when known."""
    if not base_url:
        return {}
    links = {"media_url": base_url.rstrip("/") + media_page_path(media_id)}
    if detection_id is not None:
        links["thumbnail_url"] = base_url.rstrip("/") + thumbnail_path(detection_id)
    return links
