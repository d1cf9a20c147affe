"""Filesystem events to nominations. Events only say "look at this path"; the settle tracker decides.

Opened, closed-without-write and attribute events are ignored: the watcher's own probe and hash open
files, and must not nominate them again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from watcher.intake import WatchedSource
from watcher.scan import walk
from watcher.settle import SettleTracker

log = logging.getLogger(__name__)


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


class SourceEventHandler(FileSystemEventHandler):
    def __init__(self, source: WatchedSource, tracker: SettleTracker) -> None:
        self.source = source
        self.tracker = tracker

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # an observer thread must never die on one odd path
            log.exception("source %s: could not handle %s", self.source.rules.name, event)

    def _dispatch(self, event: FileSystemEvent) -> None:
        kind = type(event)
        if kind in (FileCreatedEvent, FileModifiedEvent, FileClosedEvent):
            self._nominate(Path(_text(event.src_path)))
        elif kind is FileMovedEvent:
            self.tracker.forget(Path(_text(event.src_path)))
            self._nominate(Path(_text(event.dest_path)))
        elif kind is FileDeletedEvent:
            self.tracker.forget(Path(_text(event.src_path)))
        elif kind is DirCreatedEvent:
            self._nominate_tree(Path(_text(event.src_path)))
        elif kind is DirMovedEvent:
            self._nominate_tree(Path(_text(event.dest_path)))

    def _nominate(self, path: Path) -> None:
        if self.source.rules.wants(path):
            self.tracker.nominate(self.source, path)

    def _nominate_tree(self, directory: Path) -> None:
        """A new directory may hold files created before its watch existed: look inside it now."""
        if self.source.rules.relative(directory) is None:
            return
        for candidate in walk(self.source.rules, directory):
            self.tracker.nominate(self.source, candidate.path)
