"""Which files some process holds open for writing, read from Linux's /proc (as `lsof` and `fuser` do).

An uploader that stalls with the file open (an FTP STOR on a weak link, `rsync --inplace --bwlimit`) leaves
a size and mtime that look settled; the open file descriptor says otherwise. `/proc/PID/fd/N` links to the
file (stat gives its device and inode, so renames do not fool it) and `/proc/PID/fdinfo/N` gives the open
flags (O_WRONLY or O_RDWR: a writer).

Cost: one walk stats every open descriptor on the machine (about 730 in 116 processes here: ~20 ms in
Python), at most once per `ttl_s` while files wait, plus once after each new event that names a file (a
burst of events shares one walk); fdinfo is read only for descriptors on a waiting file.

The answer is `None` (unknown, fall back to settle time) when /proc is missing or some process's
descriptors cannot be read (a watcher that is not root sees only its own user's processes). /proc cannot
show writers on another machine or in another PID namespace; there inotify's close events still count.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 0.25
FileKey = tuple[int, int]  # (st_dev, st_ino)


@dataclass
class DescriptorMap:
    """Every open descriptor on a regular file, by file; `blind`: processes whose descriptors were hidden."""

    holders: dict[FileKey, list[tuple[int, int]]] = field(default_factory=dict)  # key -> [(pid, fd)]
    blind: int = 0
    taken_at: float = 0.0


def walk_descriptors(proc: Path) -> DescriptorMap:
    found = DescriptorMap(taken_at=time.monotonic())
    try:
        pids = [int(name) for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        found.blind = -1
        return found
    for pid in pids:  # the watcher's own process too: it only ever opens media for reading
        fd_dir = proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except FileNotFoundError:
            continue  # exited meanwhile
        except PermissionError:
            found.blind += 1
            continue
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(fd_dir / fd)
            except OSError:
                continue  # closed meanwhile, or a dangling link
            if stat.S_ISREG(st.st_mode):
                found.holders.setdefault((st.st_dev, st.st_ino), []).append((pid, int(fd)))
    return found


def opened_for_writing(proc: Path, pid: int, fd: int) -> bool:
    try:
        text = (proc / str(pid) / "fdinfo" / str(fd)).read_text()
    except OSError:
        return False  # closed since the walk
    for line in text.splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    return False


class OpenWriters:
    """`writers(st)`: pids holding that file open for writing; cached walks, safe from several threads."""

    def __init__(self, *, proc: Path = Path("/proc"), ttl_s: float = DEFAULT_TTL_S) -> None:
        self.proc, self.ttl_s = proc, ttl_s
        self.available = (proc / "self" / "fdinfo").is_dir()
        self._map = DescriptorMap(taken_at=float("-inf"))
        self._lock = threading.Lock()
        self._warned_blind = False

    def writers(self, st: os.stat_result, *, fresh_after: float = float("-inf")) -> list[int] | None:
        """Pids with the file open for writing ([] when none); None when /proc cannot tell.

        `fresh_after` (monotonic): the walk must be newer than this, e.g. than the event that named the
        file, so a writer that opened it after the last walk is seen."""
        if not self.available:
            return None
        snapshot = self._snapshot(fresh_after)
        pids = sorted(
            {
                pid
                for pid, fd in snapshot.holders.get((st.st_dev, st.st_ino), [])
                if opened_for_writing(self.proc, pid, fd)
            }
        )
        if pids or snapshot.blind == 0:
            return pids
        return None

    def _snapshot(self, fresh_after: float) -> DescriptorMap:
        with self._lock:
            taken_at = self._map.taken_at
            if taken_at <= fresh_after or time.monotonic() - taken_at >= self.ttl_s:
                self._map = walk_descriptors(self.proc)
                if self._map.blind and not self._warned_blind:
                    self._warned_blind = True
                    log.info(
                        "open-writer check: %d process(es) hide their open files from this user; files "
                        "they may write are judged by settle time and structure alone",
                        self._map.blind,
                    )
            return self._map
