"""What the Home Assistant bridge announces: the source x target pairs, their topics, the discovery config
of each entity and a match's attributes.

Entity ids read `binary_sensor.{node}_{source}_{target}`, `sensor.{node}_{source}_{target}_score` and
`image.{node}_{source}_{target}` (`object_id`), so the default prefix gives `binary_sensor.vigil_cam1_person`;
the device is "Vigil" (with the prefix when it is not `vigil`), so names read "Vigil cam1 person".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.alerts.feed import SeenDetection
from vigil.config.settings import HomeAssistantSettings
from vigil.store.schema import Source, Target
from vigil.web.urls import absolute_url, media_links

ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
SCORE_PRECISION = 2  # digits Home Assistant shows of a score (the payload keeps 4)


def _slug(value: str) -> str:
    """An id Home Assistant accepts in discovery topics and unique ids: [A-Za-z0-9_-]."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", value) or "_"


def _vigil_version() -> str:
    try:
        return version("vigil")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, order=True)
class Pair:
    source: str
    target: str

    @property
    def object_id(self) -> str:
        return f"{_slug(self.source)}_{_slug(self.target)}"


class Topics:
    def __init__(self, conf: HomeAssistantSettings) -> None:
        self.prefix = conf.topic_prefix
        self.discovery = conf.discovery_prefix
        self.node = _slug(conf.topic_prefix)
        self.availability = f"{self.prefix}/availability"
        self.ha_status = f"{self.discovery}/status"

    def of(self, pair: Pair, kind: str) -> str:
        """`kind` is state, score, image or attributes."""
        return f"{self.prefix}/{_slug(pair.source)}/{_slug(pair.target)}/{kind}"

    def config(self, component: str, pair: Pair) -> str:
        return f"{self.discovery}/{component}/{self.node}/{pair.object_id}/config"


def _device(topics: Topics, base_url: str | None) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [f"vigil_{topics.node}"],
        "name": "Vigil" if topics.node.lower() == "vigil" else f"Vigil {topics.prefix}",
        "manufacturer": "Vigil",
        "model": "video-language model watcher",
        "sw_version": _vigil_version(),
    }
    review = absolute_url(base_url, "/")
    if review is not None:
        device["configuration_url"] = review  # "Visit" on the device page opens the review page
    return device


def discovery_configs(
    pair: Pair, topics: Topics, conf: HomeAssistantSettings, base_url: str | None
) -> dict[str, dict[str, Any]]:
    """The retained config message of each entity of `pair`, by config topic."""
    common = {
        "availability": [
            {"topic": topics.availability, "payload_available": ONLINE, "payload_not_available": OFFLINE}
        ],
        "device": _device(topics, base_url),
        "origin": {"name": "vigil", "sw_version": _vigil_version()},
        "qos": 1,
    }
    uid = f"vigil_{topics.node}_{pair.object_id}"
    object_id = f"{topics.node}_{pair.object_id}"
    label = f"{pair.source} {pair.target}"
    return {
        topics.config("binary_sensor", pair): {
            **common,
            "name": label,
            "unique_id": uid,
            "object_id": object_id,
            "device_class": conf.device_class,
            "state_topic": topics.of(pair, "state"),
            "payload_on": ON,
            "payload_off": OFF,
            "json_attributes_topic": topics.of(pair, "attributes"),
        },
        topics.config("sensor", pair): {
            **common,
            "name": f"{label} score",
            "unique_id": f"{uid}_score",
            "object_id": f"{object_id}_score",
            "icon": "mdi:gauge",
            "state_topic": topics.of(pair, "score"),
            "state_class": "measurement",
            "suggested_display_precision": SCORE_PRECISION,
        },
        topics.config("image", pair): {
            **common,
            "name": f"{label} last match",
            "unique_id": f"{uid}_image",
            "object_id": object_id,
            "icon": "mdi:cctv",
            "image_topic": topics.of(pair, "image"),
            "content_type": "image/jpeg",
        },
    }


def current_pairs(session: Session) -> set[Pair]:
    """Every source with each enabled target it is asked about (a source's own list, else all)."""
    targets = set(session.scalars(select(Target.name).where(Target.enabled.is_(True))))
    pairs: set[Pair] = set()
    for source in session.scalars(select(Source)):
        wanted = targets if source.target_names is None else targets & set(source.target_names)
        pairs.update(Pair(source.name, t) for t in wanted)
    return pairs


def attributes(d: SeenDetection, base_url: str | None) -> dict[str, Any]:
    return {
        "detection_id": d.id,
        "media_id": d.media_id,
        "path": d.media_path,
        "score": d.p_yes,
        "start_s": d.start_s,
        "end_s": d.end_s,
        "matched_at": d.created_at.isoformat(),  # when it was stored: OFF is off_after_s later
        "evidence": d.evidence,
        **media_links(base_url, media_id=d.media_id, detection_id=d.id),
    }
