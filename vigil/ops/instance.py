"""One `vigil run` per data directory: an advisory lock (`flock`) on `<data_dir>/vigil-run.lock`.

The kernel holds the lock for the open file, so it is released when the last process holding it exits,
however it exits: never stale after a crash or a SIGKILL, and no pid file to clean up. `vigil run` keeps it
for its whole life and its children inherit it (`Supervisor(pass_fds=...)`), so a second `vigil run` is
refused while any process of the first one still runs, with the first one's pid in the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from vigil.errors import ConfigError

LOCK_NAME = "vigil-run.lock"


class InstanceLock:
    """Held from `acquire` until `release` (or the end of every process that inherited it)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> InstanceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"another `vigil run` (pid {holder}) already uses the data directory {self.path.parent}: "
                "stop it first, or give this one its own storage.data_dir (VIGIL_STORAGE__DATA_DIR)"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # the lock goes with the last descriptor of this open file
            self.fd = None
