"""Which workers are running, with their queue and model: the one answer `vigil workers` and `vigil health`
give.

On Redis or RabbitMQ the workers are asked over the broker (the `vigil_info` remote-control command). The
embedded broker has no remote control; there every worker (on this machine, as its SQLite files require)
keeps a file beside the broker's, `<broker file>.workers/<name>.json`, naming its pid: a worker whose pid
is gone is not running, whatever its file says (a SIGKILLed worker leaves one behind).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from vigil.config.settings import Settings
from vigil.ops.celery_app import EMBEDDED_SCHEME, INFO_COMMAND, is_embedded, make_celery


@dataclass(frozen=True, order=True)
class LiveWorker:
    name: str
    queue: str
    model: str | None  # the model a gpu worker loads (None for the delivery worker)


def announcements_dir(settings: Settings) -> Path | None:
    """Where the embedded broker's workers announce themselves (None: not a broker in a file)."""
    if not is_embedded(settings):
        return None
    database = make_url(settings.broker.url.removeprefix(EMBEDDED_SCHEME)).database
    if database in (None, "", ":memory:"):
        return None
    return Path(str(database)).expanduser().absolute().with_name(Path(str(database)).name + ".workers")


def announce(settings: Settings, *, name: str, queue: str, model: str | None) -> Path | None:
    """Called by a worker at start on the embedded broker: its file, removed again when it exits."""
    folder = announcements_dir(settings)
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    pid = os.getpid()
    path.write_text(json.dumps({"pid": pid, "queue": queue, "model": model}))

    def withdraw() -> None:
        if os.getpid() == pid:  # never from a forked pool child that exits
            with contextlib.suppress(OSError):
                path.unlink()

    atexit.register(withdraw)
    return path


def live_workers(settings: Settings, *, timeout_s: float) -> list[LiveWorker]:
    """Every running worker, sorted by name: asked over the broker, or read from the announcements."""
    if is_embedded(settings):
        return _announced(settings)
    celery = make_celery(settings)
    try:
        replies = celery.control.inspect(timeout=timeout_s)._request(INFO_COMMAND) or {}
    finally:
        celery.close()
    return sorted(
        (
            LiveWorker(name, str(info.get("queue", "?")), info.get("model"))
            if isinstance(info, dict)
            else LiveWorker(name, "?", None)
        )
        for name, info in replies.items()
    )


def _announced(settings: Settings) -> list[LiveWorker]:
    folder = announcements_dir(settings)
    if folder is None or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not one of ours
        if _running(pid):
            found.append(LiveWorker(path.stem, str(info.get("queue", "?")), info.get("model")))
    return found


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    # A zombie (exited, not yet reaped by its parent) is not running either.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
