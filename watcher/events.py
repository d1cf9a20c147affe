"""Filesystem events to nominations. Events only say "look at this path"; the settle tracker decides.

Opened, closed-without-write and attribute events are ignored: the watcher's own probe and hash open
files, and must not nominate them again. On an inotify source, modify and close-after-write events are
also passed on as evidence that a writer still holds a file (modified after its last close); a polling
observer reports no closes, so its modify events carry no such evidence.
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
from watcher.settle import EventKind, SettleTracker

log = logging.getLogger(__name__)


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


class SourceEventHandler(FileSystemEventHandler):
    def __init__(
        self, source: WatchedSource, tracker: SettleTracker, *, closes_reported: bool = False
    ) -> None:
        self.source = source
        self.tracker = tracker
        self.closes_reported = closes_reported  # True for inotify: every write-open ends with a close event

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # an observer thread must never die on one odd path
            log.exception("source %s: could not handle %s", self.source.rules.name, event)

    def _dispatch(self, event: FileSystemEvent) -> None:
        kind = type(event)
        if kind is FileModifiedEvent:
            self._nominate(Path(_text(event.src_path)), "modified" if self.closes_reported else None)
        elif kind is FileClosedEvent:
            self._nominate(Path(_text(event.src_path)), "closed")
        elif kind is FileCreatedEvent:
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

    def _nominate(self, path: Path, event: EventKind | None = None) -> None:
        if self.source.rules.wants(path):
            self.tracker.nominate(self.source, path, event=event)

    def _nominate_tree(self, directory: Path) -> None:
        """A new directory may hold files created before its watch existed: look inside it now."""
        if self.source.rules.relative(directory) is None:
            return
        for candidate in walk(self.source.rules, directory):
            self.tracker.nominate(self.source, candidate.path)
