"""Is the file on disk still the version a media row registered? One check for every reader of the file.

A row records the size, mtime and sha256 of the file when the watcher found it complete. The file is that
version while its size and mtime are unchanged and, when the row has a sha256 and the file is at most
`HASH_CHECK_MAX_BYTES`, its content hashes to it (a same-size rewrite with a restored mtime is caught too).
The worker checks it before and after decoding (`workers/analysis/version.py`); the review page checks it
before it plays a version's file, so an old version's page never plays the new content.

Hashing is the costly part; `Digests` remembers a file's hash under its full stat identity (device, inode,
size, mtime and ctime in nanoseconds): any write changes the ctime, so a remembered hash is never stale.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

HASH_CHECK_MAX_BYTES = 64 * 1024 * 1024
HASH_CHUNK = 1024 * 1024


class Version(Protocol):
    """What a row says its file was (a media row, or the worker's claim)."""

    @property
    def size_bytes(self) -> int: ...
    @property
    def mtime(self) -> datetime: ...
    @property
    def sha256(self) -> str | None: ...


@dataclass(frozen=True)
class FileState:
    """The file as it is now: size and mtime as `media` stores them."""

    size_bytes: int
    mtime: datetime


def file_mtime(st: os.stat_result) -> datetime:
    """The mtime as stored in `media.mtime` (UTC, microseconds)."""
    return datetime.fromtimestamp(st.st_mtime, UTC)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stat_file(path: Path) -> FileState | None:
    """The file's state, or None when it is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return FileState(st.st_size, file_mtime(st))


def state_change(before: Version | FileState, now: FileState, when: str) -> str | None:
    """Why `now` is not the file `before` describes (size, then mtime), or None when it is."""
    if now.size_bytes != before.size_bytes:
        return f"file changed {when}: {before.size_bytes} -> {now.size_bytes} bytes"
    if now.mtime != before.mtime:
        return f"file changed {when}: mtime {before.mtime.isoformat()} -> {now.mtime.isoformat()}"
    return None


class Digests:
    """sha256 of files, remembered under their stat identity (bounded, thread-safe)."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._known: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
        digest = sha256_file(path)
        with self._lock:
            self._known[key] = digest
            while len(self._known) > self.capacity:
                self._known.popitem(last=False)
        return digest


def version_change(path: Path, registered: Version, *, digests: Digests | None = None) -> str | None:
    """Why the file at `path` is no longer the registered version, or None while it is.

    Raises FileNotFoundError when the file is gone (callers say what that means for them)."""
    now = stat_file(path)
    if now is None:
        raise FileNotFoundError(path)
    changed = state_change(registered, now, "since registration")
    if changed is not None:
        return changed
    if registered.sha256 is not None and now.size_bytes <= HASH_CHECK_MAX_BYTES:
        digest = digests.sha256(path) if digests is not None else sha256_file(path)
        if digest != registered.sha256:
            return "file content changed since registration (same size and mtime, new sha256)"
    return None
