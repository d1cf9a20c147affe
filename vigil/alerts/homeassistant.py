"""Home Assistant over MQTT: discovery, state, score, last thumbnail and availability.

For every source x target pair Vigil announces three entities with MQTT discovery (retained, under
`homeassistant.discovery_prefix`; `vigil.alerts.ha_discovery`): a binary sensor that is ON from a matching
detection until `off_after_s` after it was stored, a sensor with every window's score, and an image entity
with the thumbnail of the last match. Their topics live under `homeassistant.topic_prefix`:

    {topic_prefix}/availability                  online / offline (retained; the last will says offline)
    {topic_prefix}/{source}/{target}/state       ON / OFF (retained)
    {topic_prefix}/{source}/{target}/score       e.g. 0.8731, one message per window in id order (retained)
    {topic_prefix}/{source}/{target}/image       JPEG bytes (retained)
    {topic_prefix}/{source}/{target}/attributes  JSON: media, window, evidence, links (retained)

The bridge follows detections in the database (`vigil.alerts.feed`), so it works with workers on other
machines; it runs as its own process (`vigil homeassistant`, started by `vigil run` when enabled). Its
position is kept in the database per topic prefix and saved once the broker acknowledged what was read, so a
restarted bridge publishes what it missed, in order. A state is derived from the time of the pair's last
match, never from how long this process has run: a match older than `off_after_s` (one replayed after a
restart) updates the score, image and attributes, and leaves the state OFF. When Home Assistant says
`online` on `{discovery_prefix}/status` (it restarted), the configs are sent again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vigil.alerts.channels import mqtt_client, mqtt_keepalive
from vigil.alerts.feed import DetectionFeed, Position, SeenDetection, latest_matches
from vigil.alerts.ha_discovery import OFF, OFFLINE, ON, ONLINE, Pair, Topics, attributes, current_pairs
from vigil.alerts.ha_discovery import discovery_configs as _configs
from vigil.config.settings import ChannelSettings, Settings
from vigil.errors import TransientError

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 8 * 1024 * 1024
PAIRS_REFRESH_S = 30.0
MAX_UNACKNOWLEDGED_POLLS = 8  # polls in flight the broker has not acknowledged: read no more until it does


def _acknowledged(info: Any) -> bool:
    """The broker acknowledged this QoS 1 message (a message queued while disconnected is not, yet)."""
    try:
        return info.rc == 0 and bool(info.is_published())
    except (RuntimeError, ValueError):
        return False


class HomeAssistantBridge:
    """One persistent MQTT connection (with its last will) and the state of every pair."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conf = settings.homeassistant
        self.channel: ChannelSettings = settings.homeassistant_channel()
        self.base_url = settings.web.base_url
        self.factory = factory
        self.clock = clock  # wall time: states are derived from when matches were stored
        self.topics = Topics(self.conf)
        self.feed = DetectionFeed(factory, consumer=f"homeassistant:{self.conf.topic_prefix}", clock=clock)
        self.pairs: set[Pair] = set()
        self.pairs_at = -PAIRS_REFRESH_S
        self.last_match: dict[Pair, float] = {}  # when the newest match of each pair was stored
        self.on: set[Pair] = set()  # pairs whose published state is ON
        self.unacknowledged: list[tuple[Position, list[Any]]] = []  # per poll, in order
        self.saved = self.feed.position()
        self.closing = False
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

    def discovery_configs(self, pair: Pair) -> dict[str, dict[str, Any]]:
        return _configs(pair, self.topics, self.conf, self.base_url)

    def state_of(self, pair: Pair, now: float) -> str:
        """ON until `off_after_s` after the pair's last match was stored."""
        last = self.last_match.get(pair)
        return ON if last is not None and now < last + self.conf.off_after_s else OFF

    # -- connection (paho's network thread) --------------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("home assistant: MQTT broker refused the connection: %s", reason)
            return
        log.info("home assistant: connected to %s:%d", self.channel.mqtt_host, self.channel.mqtt_port)
        client.subscribe(self.topics.ha_status, qos=1)
        now = self.clock()
        try:  # matches stored while the broker was away count too: no OFF then ON on a reconnect
            recent = self._recent_matches(now)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("home assistant: cannot read the latest matches: %s", exc)
            recent = {}
        with self.lock:  # (re)connected: configs, then every pair's state as the matches imply
            for pair, at in recent.items():
                self.last_match[pair] = max(at, self.last_match.get(pair, at))
            self._announce(self.pairs)
            for pair in sorted(self.pairs):
                self._publish_state(pair, now)
            self._publish(self.topics.availability, ONLINE)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self.closing:
            log.info("home assistant: disconnected from the MQTT broker")
        else:
            log.warning("home assistant: disconnected from the MQTT broker (%s); reconnecting", reason)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if message.topic == self.topics.ha_status and message.payload == ONLINE.encode():
            log.info("home assistant restarted: sending discovery again")
            with self.lock:
                self._announce(self.pairs)

    # -- lifecycle ---------------------------------------------------------------------------------

    def _recent_matches(self, now: float) -> dict[Pair, float]:
        """When the newest match of each pair still ON at `now` was stored, from the database."""
        since = datetime.fromtimestamp(now - self.conf.off_after_s, UTC)
        with self.factory() as session:
            return {Pair(*key): at.timestamp() for key, at in latest_matches(session, since).items()}

    def start(self) -> None:
        now = self.clock()
        recent = self._recent_matches(now)
        with self.lock, self.factory() as session:  # announced once connected (_on_connect)
            self.pairs, self.pairs_at = current_pairs(session), now
            self.last_match = recent
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
                except (SQLAlchemyError, TransientError, OSError) as exc:  # try again next poll
                    log.warning("home assistant: cannot read detections: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        self.closing = True
        info = self.client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
        try:
            if self.client.is_connected():
                info.wait_for_publish(timeout=self.channel.timeout_s)
        except (RuntimeError, ValueError) as exc:  # the broker went away meanwhile: the will says offline
            log.warning("home assistant: could not say offline: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()
        try:  # what the broker acknowledged before offline is delivered: the next start resumes after it
            self._save_delivered()
        except (SQLAlchemyError, TransientError, OSError) as exc:
            log.warning("home assistant: cannot save the feed position: %s", exc)

    def step(self) -> None:
        """One poll: delivered position saved, new pairs announced, new detections published, expired ON
        states turned OFF."""
        now = self.clock()
        self._save_delivered()
        # messages queued while disconnected are sent again on reconnect and never count as acknowledged:
        # a later poll's acknowledgement covers them, so only polls still in flight hold reading back
        in_flight = sum(all(i.rc == 0 for i in sent) for _, sent in self.unacknowledged)
        readable = self.client.is_connected() and in_flight < MAX_UNACKNOWLEDGED_POLLS
        detections = self.feed.poll() if readable else []
        with self.lock:
            unknown = any(Pair(d.source, d.target) not in self.pairs for d in detections)
            if unknown or now - self.pairs_at >= PAIRS_REFRESH_S:
                self._refresh_pairs(now)
            sent = self._publish_detections(detections, now)
            for pair in sorted(self.on):
                if self.state_of(pair, now) == OFF:
                    self._publish_state(pair, now)
        position = self.feed.position()
        if readable and (sent or position != self.saved):
            self.unacknowledged.append((position, sent))

    def _save_delivered(self) -> None:
        """Save the position of the newest poll whose messages were all acknowledged (the broker
        acknowledges in order, so every earlier poll's were too)."""
        done = max(
            (i for i, (_, sent) in enumerate(self.unacknowledged) if all(map(_acknowledged, sent))),
            default=-1,
        )
        if done < 0:
            return
        position = self.unacknowledged[done][0]
        del self.unacknowledged[: done + 1]
        if position != self.saved:
            self.feed.save(position)
            self.saved = position

    # -- publishing (callers hold the lock) ---------------------------------------------------------

    def _publish(self, topic: str, payload: str | bytes) -> Any:
        return self.client.publish(topic, payload, qos=1, retain=True)

    def _publish_state(self, pair: Pair, now: float) -> Any:
        state = self.state_of(pair, now)
        (self.on.add if state == ON else self.on.discard)(pair)
        return self._publish(self.topics.of(pair, "state"), state)

    def _announce(self, pairs: set[Pair]) -> None:
        for pair in sorted(pairs):
            for topic, config in self.discovery_configs(pair).items():
                self._publish(topic, json.dumps(config, separators=(",", ":")))

    def _refresh_pairs(self, now: float) -> None:
        with self.factory() as session:
            pairs = current_pairs(session)
        self.pairs_at = now
        if pairs == self.pairs:
            return
        gone, new = self.pairs - pairs, pairs - self.pairs
        for pair in sorted(gone):  # an empty retained config removes the entity from Home Assistant
            for topic in self.discovery_configs(pair):
                self._publish(topic, b"")
            self.on.discard(pair)
        self._announce(new)
        for pair in sorted(new):  # a new entity starts with a state, not "unknown"
            self._publish_state(pair, now)
        self.pairs = pairs
        log.info("home assistant: %d pair(s), %d new, %d gone", len(pairs), len(new), len(gone))

    def _publish_detections(self, detections: list[SeenDetection], now: float) -> list[Any]:
        """Every window's score in id order; then, per pair, the newest match's image, attributes and
        the state it implies. Returns the messages sent."""
        sent = []
        newest_match: dict[Pair, SeenDetection] = {}
        for d in detections:
            pair = Pair(d.source, d.target)
            sent.append(self._publish(self.topics.of(pair, "score"), f"{d.p_yes:.4f}"))
            if d.matched:
                newest_match[pair] = d
        for pair, d in sorted(newest_match.items()):
            at = d.created_at.timestamp()
            if at < self.last_match.get(pair, at):  # a late commit of an older match: not the last one
                continue
            self.last_match[pair] = at
            # image and attributes first: an automation triggered by ON finds them current
            image = _read_image(d.thumbnail_path)
            if image is not None:
                sent.append(self._publish(self.topics.of(pair, "image"), image))
            attrs = attributes(d, self.base_url)
            sent.append(
                self._publish(self.topics.of(pair, "attributes"), json.dumps(attrs, ensure_ascii=False))
            )
            sent.append(self._publish_state(pair, now))
            log.info(
                "home assistant: %s at %s %s (detection %d)",
                pair.target,
                pair.source,
                self.state_of(pair, now),
                d.id,
            )
        return sent


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
