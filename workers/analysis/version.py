"""The worker analyses the version it claimed: the file on disk must still be the one the row registered.

The check itself is the core's (`vigil.media.identity`, shared with the review page): size and mtime, and
the sha256 when the file is at most `HASH_CHECK_MAX_BYTES`, before decoding; size and mtime again after. A
file that changed is not analysed under the old row: the row ends `superseded`, and the watcher registers
the new content as the next version (its events, or its next rescan, see the changed file).
"""

from __future__ import annotations

from pathlib import Path

from vigil.media.identity import HASH_CHECK_MAX_BYTES, FileState, stat_file, state_change, version_change
from vigil.media.lifecycle import Registered

__all__ = ["HASH_CHECK_MAX_BYTES", "FileRead", "VersionChanged", "check_after", "check_before"]

FileRead = FileState  # the file as the worker read it: stored with the analysis


class VersionChanged(Exception):
    """The file is no longer the version the row registered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_before(path: Path, registered: Registered) -> FileRead | None:
    """The file as it is now, when it is the registered version; None when it is gone."""
    now = stat_file(path)
    if now is None:
        return None
    try:
        reason = version_change(path, registered)
    except FileNotFoundError:
        return None  # gone: decoding reports it as the file's failure
    if reason is not None:
        raise VersionChanged(reason)
    return now


def check_after(path: Path, read: FileRead | None) -> None:
    """Raise when the file changed while it was being decoded."""
    if read is None:
        return
    now = stat_file(path)
    if now is not None:
        reason = state_change(read, now, "while it was analysed")
        if reason is not None:
            raise VersionChanged(reason)
