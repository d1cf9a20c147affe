"""Which paths under a source the watcher considers, by the same rules for events, scans and rescans.

- include/ignore globs match file names case-insensitively (cameras write ``CLIP.MP4``); ignore globs also
  apply to every directory on the way (``.*`` hides ``.sync/``, ``.Trash-1000/``);
- the drop-folder outboxes ``done/`` and ``failed/`` at the top of a source, and ``*.vigil.json`` sidecars,
  are never media;
- a path whose real location is outside the source root (a symlink pointing out) is refused;
- only regular files are media: FIFOs, sockets and devices are reported as skipped and never opened.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from vigil.config.settings import SourceSettings

log = logging.getLogger(__name__)

OUTBOX_DIRS = frozenset({"done", "failed"})
SIDECAR_SUFFIX = ".vigil.json"


@dataclass(frozen=True)
class SourceRules:
    """A source's path rules, resolved once (the root is the real path)."""

    name: str
    root: Path
    recursive: bool
    include: tuple[str, ...]
    ignore: tuple[str, ...]

    @classmethod
    def of(cls, source: SourceSettings) -> SourceRules:
        return cls(
            name=source.name,
            root=Path(os.path.realpath(source.path)),
            recursive=source.recursive,
            include=tuple(p.lower() for p in source.include),
            ignore=tuple(p.lower() for p in source.ignore),
        )

    def relative(self, path: str | os.PathLike[str]) -> tuple[str, ...] | None:
        """The path's parts below the root, or None when it is not below it (lexically)."""
        try:
            rel = Path(os.path.abspath(path)).relative_to(self.root)
        except ValueError:
            return None
        return rel.parts or None

    def dir_allowed(self, parts: tuple[str, ...]) -> bool:
        """Whether a directory (parts below the root) may hold media."""
        if not parts:
            return True
        if not self.recursive or parts[0] in OUTBOX_DIRS:
            return False
        return not any(self._ignored(part) for part in parts)

    def name_wanted(self, name: str) -> bool:
        lowered = name.lower()
        if lowered.endswith(SIDECAR_SUFFIX) or self._ignored(name):
            return False
        return any(fnmatchcase(lowered, pattern) for pattern in self.include)

    def wants(self, path: str | os.PathLike[str]) -> bool:
        """Whether `path` names a media file of this source, by its name alone (no I/O)."""
        parts = self.relative(path)
        if parts is None:
            return False
        return self.dir_allowed(parts[:-1]) and self.name_wanted(parts[-1])

    def inside(self, path: str | os.PathLike[str]) -> bool:
        """Whether the real location of `path` (symlinks resolved) is inside the root."""
        real = Path(os.path.realpath(path))
        return real == self.root or real.is_relative_to(self.root)

    def _ignored(self, name: str) -> bool:
        lowered = name.lower()
        return any(fnmatchcase(lowered, pattern) for pattern in self.ignore)


class NotMedia(Exception):
    """A path that exists but must not be registered (special file, symlink out of the root)."""


def regular_file_stat(rules: SourceRules, path: Path) -> os.stat_result:
    """Stat `path` for registration without opening it.

    Raises FileNotFoundError when it vanished, NotMedia for symlinks out of the root and special files.
    """
    if not rules.inside(path):
        raise NotMedia(f"symlink out of source {rules.name!r}: {path} -> {os.path.realpath(path)}")
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotMedia(f"not a regular file ({_kind(st.st_mode)}): {path}")
    return st


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "special file"
