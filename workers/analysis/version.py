"""The worker analyses the version it claimed: the file on disk must still be the one the row registered.

A row records the size, mtime and sha256 of the file when the watcher found it complete. Before decoding,
the worker compares size and mtime (and the sha256 when the file is at most `HASH_CHECK_MAX_BYTES`, so a
same-size rewrite with a restored mtime is caught too); after decoding, size and mtime again. A file that
changed is not analysed under the old row: the row ends `superseded`, and the watcher registers the new
content as the next version (its events, or its next rescan, see the changed file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vigil.media.lifecycle import Registered
from vigil.media.registry import file_mtime, sha256_file

HASH_CHECK_MAX_BYTES = 64 * 1024 * 1024


class VersionChanged(Exception):
    """The file is no longer the version the row registered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FileRead:
    """The file as the worker read it: stored with the analysis."""

    size_bytes: int
    mtime: datetime


def _stat(path: Path) -> FileRead | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None  # gone: decoding reports it as the file's failure
    return FileRead(st.st_size, file_mtime(st))


def _compare(registered: Registered | FileRead, now: FileRead, when: str) -> None:
    if now.size_bytes != registered.size_bytes:
        raise VersionChanged(f"file changed {when}: {registered.size_bytes} -> {now.size_bytes} bytes")
    if now.mtime != registered.mtime:
        raise VersionChanged(
            f"file changed {when}: mtime {registered.mtime.isoformat()} -> {now.mtime.isoformat()}"
        )


def check_before(path: Path, registered: Registered) -> FileRead | None:
    """The file as it is now, when it is the registered version; None when it is gone."""
    now = _stat(path)
    if now is None:
        return None
    _compare(registered, now, "since registration")
    if registered.sha256 is not None and now.size_bytes <= HASH_CHECK_MAX_BYTES:
        try:
            digest = sha256_file(path)
        except FileNotFoundError:
            return None
        if digest != registered.sha256:
            raise VersionChanged("file content changed since registration (same size and mtime, new sha256)")
    return now


def check_after(path: Path, read: FileRead | None) -> None:
    """Raise when the file changed while it was being decoded."""
    if read is None:
        return
    now = _stat(path)
    if now is not None:
        _compare(read, now, "while it was analysed")
