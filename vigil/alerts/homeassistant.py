"""Home Assistant over MQTT: discovery, state, score, last thumbnail and availability.

For every source x target pair Vigil announces three entities with MQTT discovery (retained, under
`homeassistant.discovery_prefix`): a binary sensor that is ON from a matching detection until
`off_after_s` after the last one, a sensor with the last score (P(yes) of the newest window), and an image
entity with the thumbnail of the last match. Their topics live under `homeassistant.topic_prefix`:

    {topic_prefix}/availability                  online / offline (retained; the last will says offline)
    {topic_prefix}/{source}/{target}/state       ON / OFF (retained)
    {topic_prefix}/{source}/{target}/score       e.g. 0.8731 (retained)
    {topic_prefix}/{source}/{target}/image       JPEG bytes (retained)
    {topic_prefix}/{source}/{target}/attributes  JSON: media, window, evidence, links (retained)

The bridge follows detections in the database (`vigil.alerts.feed`), so it works with workers on other
machines; it runs as its own process (`vigil homeassistant`, started by `vigil run` when enabled). When
Home Assistant says `online` on `{discovery_prefix}/status` (it restarted), the configs are sent again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vigil.alerts.channels import mqtt_client, mqtt_keepalive
from vigil.alerts.feed import DetectionFeed, SeenDetection
from vigil.config.settings import ChannelSettings, HomeAssistantSettings, Settings
from vigil.store.schema import Source, Target
from vigil.web.urls import media_links

log = logging.getLogger(__name__)

ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
MAX_IMAGE_BYTES = 8 * 1024 * 1024
PAIRS_REFRESH_S = 30.0


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


def discovery_configs(pair: Pair, topics: Topics) -> dict[str, dict[str, Any]]:
    """The retained config message of each entity of `pair`, by config topic."""
    common = {
        "availability": [
            {"topic": topics.availability, "payload_available": ONLINE, "payload_not_available": OFFLINE}
        ],
        "device": {
            "identifiers": [f"vigil_{topics.node}"],
            "name": f"Vigil {topics.prefix}",
            "manufacturer": "Vigil",
            "model": "video-language model watcher",
            "sw_version": _vigil_version(),
        },
        "origin": {"name": "vigil", "sw_version": _vigil_version()},
        "qos": 1,
    }
    uid = f"vigil_{topics.node}_{pair.object_id}"
    label = f"{pair.source} {pair.target}"
    return {
        topics.config("binary_sensor", pair): {
            **common,
            "name": label,
            "unique_id": uid,
            "state_topic": topics.of(pair, "state"),
            "payload_on": ON,
            "payload_off": OFF,
            "json_attributes_topic": topics.of(pair, "attributes"),
        },
        topics.config("sensor", pair): {
            **common,
            "name": f"{label} score",
            "unique_id": f"{uid}_score",
            "state_topic": topics.of(pair, "score"),
            "state_class": "measurement",
            "suggested_display_precision": 2,
        },
        topics.config("image", pair): {
            **common,
            "name": f"{label} last match",
            "unique_id": f"{uid}_image",
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
        "evidence": d.evidence,
        **media_links(base_url, media_id=d.media_id, detection_id=d.id),
    }


class HomeAssistantBridge:
    """One persistent MQTT connection (with its last will) and the state of every pair."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conf = settings.homeassistant
        self.channel: ChannelSettings = settings.homeassistant_channel()
        self.base_url = settings.web.base_url
        self.factory = factory
        self.clock = clock
        self.topics = Topics(self.conf)
        self.feed = DetectionFeed(factory, clock=clock)
        self.pairs: set[Pair] = set()
        self.pairs_at = -PAIRS_REFRESH_S
        self.off_at: dict[Pair, float] = {}  # pairs that are ON -> when they turn OFF
        self.lock = threading.Lock()
        self.client = self._client()

    def _client(self) -> Any:
        client = mqtt_client(self.channel, client_id=f"vigil-ha-{self.topics.node}-{os.getpid()}")
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -- connection (paho's network thread) --------------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("home assistant: MQTT broker refused the connection: %s", reason)
            return
        log.info("home assistant: connected to %s:%d", self.channel.mqtt_host, self.channel.mqtt_port)
        client.subscribe(self.topics.ha_status, qos=1)
        with self.lock:  # (re)connected: configs, then every pair's state as this process knows it
            self._announce(self.pairs)
            for pair in sorted(self.pairs):
                self._publish(self.topics.of(pair, "state"), ON if pair in self.off_at else OFF)
            self._publish(self.topics.availability, ONLINE)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        log.warning("home assistant: disconnected from the MQTT broker (%s); reconnecting", reason)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if message.topic == self.topics.ha_status and message.payload == ONLINE.encode():
            log.info("home assistant restarted: sending discovery again")
            with self.lock:
                self._announce(self.pairs)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        with self.lock, self.factory() as session:  # announced once connected (_on_connect)
            self.pairs, self.pairs_at = current_pairs(session), self.clock()
        assert self.channel.mqtt_host is not None
        keepalive = mqtt_keepalive(self.channel)
        self.client.connect_async(self.channel.mqtt_host, self.channel.mqtt_port, keepalive=keepalive)
        self.client.loop_start()

    def run(self, stop: threading.Event) -> None:
        """Follow detections until `stop` is set, then say offline and disconnect."""
        self.start()
        try:
            while not stop.wait(self.conf.poll_interval_s):
                try:
                    self.step()
                except (SQLAlchemyError, OSError) as exc:  # the database is away: try again next poll
                    log.warning("home assistant: cannot read detections: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        info = self.client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
        try:
            if self.client.is_connected():
                info.wait_for_publish(timeout=self.channel.timeout_s)
        except (RuntimeError, ValueError) as exc:  # the broker went away meanwhile: the will says offline
            log.warning("home assistant: could not say offline: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()

    def step(self) -> None:
        """One poll: new pairs announced, new detections published, expired ON states turned OFF."""
        now = self.clock()
        detections = self.feed.poll()
        with self.lock:
            unknown = any(Pair(d.source, d.target) not in self.pairs for d in detections)
            if unknown or now - self.pairs_at >= PAIRS_REFRESH_S:
                self._refresh_pairs(now)
            self._publish_detections(detections, now)
            for pair, when in sorted(self.off_at.items()):
                if when <= now:
                    del self.off_at[pair]
                    self._publish(self.topics.of(pair, "state"), OFF)

    # -- publishing (callers hold the lock) ---------------------------------------------------------

    def _publish(self, topic: str, payload: str | bytes) -> None:
        self.client.publish(topic, payload, qos=1, retain=True)

    def _announce(self, pairs: set[Pair]) -> None:
        for pair in sorted(pairs):
            for topic, config in discovery_configs(pair, self.topics).items():
                self._publish(topic, json.dumps(config, separators=(",", ":")))

    def _refresh_pairs(self, now: float) -> None:
        with self.factory() as session:
            pairs = current_pairs(session)
        self.pairs_at = now
        if pairs == self.pairs:
            return
        gone, new = self.pairs - pairs, pairs - self.pairs
        for pair in sorted(gone):  # an empty retained config removes the entity from Home Assistant
            for topic in discovery_configs(pair, self.topics):
                self._publish(topic, b"")
        self._announce(new)
        self.pairs = pairs
        log.info("home assistant: %d pair(s), %d new, %d gone", len(pairs), len(new), len(gone))

    def _publish_detections(self, detections: list[SeenDetection], now: float) -> None:
        newest: dict[Pair, SeenDetection] = {}
        matched: dict[Pair, SeenDetection] = {}
        for d in detections:
            pair = Pair(d.source, d.target)
            newest[pair] = d
            if d.matched:
                matched[pair] = d
        for pair, d in sorted(newest.items()):
            self._publish(self.topics.of(pair, "score"), f"{d.p_yes:.4f}")
        for pair, d in sorted(matched.items()):
            # image and attributes first: an automation triggered by ON finds them current
            image = _read_image(d.thumbnail_path)
            if image is not None:
                self._publish(self.topics.of(pair, "image"), image)
            attrs = attributes(d, self.base_url)
            self._publish(self.topics.of(pair, "attributes"), json.dumps(attrs, ensure_ascii=False))
            self._publish(self.topics.of(pair, "state"), ON)
            self.off_at[pair] = now + self.conf.off_after_s
            log.info("home assistant: %s at %s ON (detection %d)", pair.target, pair.source, d.id)


def _read_image(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        file = Path(path)
        if file.stat().st_size > MAX_IMAGE_BYTES:
            log.warning("home assistant: thumbnail %s is over %d bytes; not sent", path, MAX_IMAGE_BYTES)
            return None
        return file.read_bytes()
    except OSError as exc:
        log.warning("home assistant: cannot read thumbnail %s: %s", path, exc)
        return None
