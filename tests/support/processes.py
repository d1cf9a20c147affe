"""Real Vigil processes for tests: one installation's environment (`VIGIL_*`), its children, its rows.

Shared by the end-to-end tests and the reliability tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.support.services import free_port, free_port_pair

DEADLINE_S = 180.0


def wait_for(predicate: Callable[[], bool], *, timeout: float = DEADLINE_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc), e.g. the pool processes of a prefork Celery worker."""
    try:
        text_ = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text_.split()]


class Stack:
    """Environment and processes of one Vigil installation under test."""

    def __init__(
        self,
        root: Path,
        *,
        db_url: str,
        broker_url: str,
        model_dir: Path,
        watch_inbox: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.root, self.db_url = root, db_url
        self.inbox = root / "inbox"
        self.inbox.mkdir(exist_ok=True)
        self.logs: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        sources = [{"name": "inbox", "path": str(self.inbox)}] if watch_inbox else []
        self.env = (
            {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
            | {
                "VIGIL_DATABASE__URL": db_url,
                "VIGIL_BROKER__URL": broker_url,
                "VIGIL_MODEL__ID": str(model_dir),
                "VIGIL_MODEL__FRAMES_PER_WINDOW": "4",
                "VIGIL_MODEL__WINDOW_S": "1.0",
                "VIGIL_WATCH__SOURCES": json.dumps(sources),
                "VIGIL_WATCH__SETTLE_S": "0.3",
                "VIGIL_WATCH__READY_DEADLINE_S": "3",
                "VIGIL_STORAGE__DATA_DIR": str(root / "data"),
                "VIGIL_LOG__FORMAT": "text",
                "VIGIL_WORK__RECONCILE_INTERVAL_S": "2",
                # `vigil run` starts the review page: a port of its own, never a parallel run's 8765.
                "VIGIL_WEB__PORT": str(free_port()),
                # Its metrics too: `vigil run` refuses to start on a port it cannot bind.
                "VIGIL_METRICS__WATCHER_PORT": str(free_port()),
                "VIGIL_METRICS__WORKER_PORT": str(free_port_pair()),
                "PYTHONUNBUFFERED": "1",
            }
            | (extra_env or {})
        )

    def vigil(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vigil", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def spawn(self, name: str, *argv: str, new_session: bool = False) -> subprocess.Popen[bytes]:
        """Start `python ARGV...` logging to NAME.log; `new_session` gives it its own process group."""
        log = self.root / f"{name}.log"
        self.logs.append(log)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        self.processes.append(process)
        return process

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def statuses(self) -> dict[str, str]:
        return {str(path): str(status) for path, status in self.rows("SELECT rel_path, status FROM media")}

    def stop_all(self, *, timeout: float = 40) -> None:
        """SIGTERM to each main process (Celery stops its pool children itself), SIGKILL after `timeout`:
        to the whole group of one started in its own session, so no pool child is left behind."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    leads_group = os.getpgid(process.pid) == process.pid
                except ProcessLookupError:
                    leads_group = False
                if leads_group:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
                process.wait()

    def dump_stacks(self) -> None:
        """Every live Vigil process (and pool child) prints its threads' stacks to its log (`vigil.ops.logs`);
        other programs (an FTP server) are left alone: the signal would end them."""
        from vigil.ops.logs import STACK_DUMP_SIGNAL

        for process in self.processes:
            argv = [str(a) for a in process.args]  # type: ignore[union-attr]
            ours = any(m in argv[1:3] for m in ("vigil", "workers", "watcher"))
            if ours and process.poll() is None:
                for pid in [process.pid, *child_pids(process.pid)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, STACK_DUMP_SIGNAL)
                    time.sleep(0.3)  # one at a time: a worker and its pool children share one log

    def dump_logs(self) -> str:
        return "\n".join(f"===== {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in self.logs)
