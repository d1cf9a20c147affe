"""Real Vigil processes for the fault suite: a `Deployment` (environment, watcher, workers, their logs,
the rows), a TCP proxy that can cut a database off, and the end-of-run invariants every fault must keep.

Processes start in their own session so a prefork worker and its children are killed together
(`os.killpg`), as an OOM killer or a power cut would do.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.support.alerting import Receiver
from tests.support.services import free_port
from vigil.store.migrate import upgrade
from workers.testing.clips import write_clip_mp4v

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 120.0
TERMINAL = {"done", "failed", "skipped"}
PERSON = {"name": "person", "description": "a person walking", "threshold": 0}


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = DEADLINE_S, what: str = "", step: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(step)


@dataclass
class FaultResult:
    """One row of the summary table printed at the end of the session."""

    fault: str
    files: int
    lost: int
    duplicated: int
    recovered_s: float | None
    notes: str = ""


class Deployment:
    """One Vigil installation under test: a watched inbox, settings in VIGIL_* variables, processes."""

    def __init__(
        self,
        root: Path,
        *,
        db_url: str,
        broker_url: str,
        model_dir: Path,
        receiver: Receiver | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root, self.db_url = root, db_url
        self.inbox = root / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.staging = root / "staging"
        self.staging.mkdir(exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[Path] = []
        self.receiver = receiver
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
            "VIGIL_DATABASE__URL": db_url,
            "VIGIL_DATABASE__BUSY_TIMEOUT_S": "5",
            "VIGIL_BROKER__URL": broker_url,
            "VIGIL_MODEL__ID": str(model_dir),
            "VIGIL_MODEL__FRAMES_PER_WINDOW": "2",
            "VIGIL_MODEL__WINDOW_S": "2.0",
            "VIGIL_MODEL__EVIDENCE": "false",
            "VIGIL_TARGETS": json.dumps([PERSON]),
            "VIGIL_WATCH__SOURCES": json.dumps([{"name": "inbox", "path": str(self.inbox)}]),
            "VIGIL_WATCH__SETTLE_S": "0.3",
            "VIGIL_WATCH__READY_DEADLINE_S": "3",
            "VIGIL_WATCH__RESCAN_INTERVAL_S": "5",
            "VIGIL_WORK__RECONCILE_INTERVAL_S": "1",
            "VIGIL_WORK__LEASE_S": "3",
            "VIGIL_WORK__REQUEUE_AFTER_S": "15",
            "VIGIL_STORAGE__DATA_DIR": str(root / "data"),
            "VIGIL_LOG__FORMAT": "text",
            "VIGIL_METRICS__ENABLED": "false",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
        }
        if receiver is not None:
            hook = {"name": "hook", "kind": "webhook", "url": receiver.url}
            self.env |= {
                "VIGIL_ALERTS__CHANNELS": json.dumps([hook]),
                "VIGIL_ALERTS__RULES": json.dumps(
                    [{"name": "seen", "targets": ["person"], "cooldown_s": 0, "channels": ["hook"]}]
                ),
                "VIGIL_ALERTS__RETRY_BASE_S": "1",
                "VIGIL_ALERTS__RETRY_MAX_S": "2",
            }
        self.env |= env or {}
        upgrade(db_url)

    # -- processes -------------------------------------------------------------------------------

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """`watcher`, `gpu` or `cpu` (a worker of that queue)."""
        argv = ["-m", "watcher"]
        if name != "watcher":
            argv = ["-m", "workers", "--queue", name, "--name", f"{name}@%h"]
        log = self.root / f"{name}.log"
        self.logs.append(log)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start_all(self) -> None:
        self.start("gpu")
        if self.receiver is not None:
            self.start("cpu")
        self.start("watcher")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """SIGKILL goes to the whole process group (pool children too); other signals to the main process."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        process.wait(timeout=30)

    def alive(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def stop_all(self, *, grace_s: float = 20.0) -> list[str]:
        """SIGTERM every process group, SIGKILL what is still there after `grace_s`; returns their names."""
        for process in self.processes.values():
            if process.poll() is None:  # the main process only: Celery stops its pool children itself
                process.send_signal(signal.SIGTERM)
        deadline, stubborn = time.monotonic() + grace_s, []
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stubborn.append(name)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if stubborn:
            print(f"did not stop within {grace_s:.0f} s of SIGTERM: {stubborn}", file=sys.stderr)
        return stubborn

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"===== {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in self.logs)

    # -- files -----------------------------------------------------------------------------------

    def drop(self, name: str, make: Callable[[Path], object]) -> Path:
        """Write a file in staging, then move it in (as uploaders that rename at the end do)."""
        staged = self.staging / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        make(staged)
        target = self.inbox / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staged, target)
        return target

    # -- rows --------------------------------------------------------------------------------------

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def statuses(self) -> dict[str, str]:
        return {str(p): str(s) for p, s in self.rows("SELECT rel_path, status FROM media")}

    def settled(self, names: set[str]) -> bool:
        try:
            statuses = self.statuses()
        except Exception:  # the database may be the thing that is down
            return False
        return names <= statuses.keys() and all(statuses[n] in TERMINAL for n in names)

    def wait_settled(self, names: set[str], *, timeout: float = DEADLINE_S) -> float:
        began = time.monotonic()
        try:
            wait_for(lambda: self.settled(names), timeout=timeout, what=f"{len(names)} files terminal")
        except AssertionError:
            raise AssertionError(f"statuses {self.statuses()}\n{self.log_tail()}") from None
        return time.monotonic() - began

    def verdict(self, good: set[str], bad: set[str] = frozenset()) -> tuple[int, int]:  # type: ignore[assignment]
        """Check the invariants; return (lost, duplicated) for the report, after asserting both are 0.

        - every good file is `done` with exactly one analysis, every bad file `failed` with a reason;
        - each file was registered once (one media row per path);
        - every alert has one delivery, delivered, and the receiver saw each idempotency key once.
        """
        statuses = self.statuses()
        lost = sorted(n for n in good if statuses.get(n) != "done")
        per_path = dict(self.rows("SELECT rel_path, COUNT(*) FROM media GROUP BY rel_path"))
        analyses = dict(
            self.rows(
                "SELECT m.rel_path, COUNT(a.id) FROM media m LEFT JOIN analyses a ON a.media_id = m.id "
                "GROUP BY m.rel_path"
            )
        )
        duplicated = sorted(n for n in good if per_path.get(n, 0) > 1 or analyses.get(n, 0) > 1)
        failures = dict(self.rows("SELECT rel_path, error FROM media WHERE status = 'failed'"))
        unexplained = sorted(n for n in bad if statuses.get(n) != "failed" or not failures.get(n))
        dup_alerts = self._check_alerts()
        assert not lost, f"lost {lost}: {statuses}\n{self.log_tail()}"
        assert not duplicated, f"duplicated {duplicated}: rows {per_path}, analyses {analyses}"
        assert not unexplained, f"bad files not failed with a reason: {unexplained}: {statuses} {failures}"
        assert not dup_alerts, f"alerts delivered more than once: {dup_alerts}"
        return len(lost), len(duplicated) + len(dup_alerts)

    def _check_alerts(self) -> list[str]:
        alerts = self.rows("SELECT id FROM alerts")
        if self.receiver is None:
            assert not alerts
            return []
        keys = self.rows("SELECT d.idempotency_key, d.status FROM deliveries d")
        assert len(keys) == len(alerts) > 0, (keys, alerts)
        wait_for(
            lambda: all(s == "delivered" for (s,) in self.rows("SELECT status FROM deliveries")),
            timeout=60,
            what="every delivery delivered",
        )
        seen = self.receiver.ids()
        assert {k for k, _ in keys} == set(seen), (keys, seen)
        return sorted({k for k in seen if seen.count(k) > 1})


def clip(seconds: float, salt: str) -> Callable[[Path], Path]:
    """A small mp4v clip whose bytes end with ``salt``, so every file is its own content."""

    def make(path: Path) -> Path:
        write_clip_mp4v(path, seconds=seconds, fps=5, size=(48, 36))
        with path.open("ab") as out:
            out.write(f"vigil-salt-{salt}".encode())
        return path

    return make


def drop_many(d: Deployment, prefix: str, count: int, seconds: float = 1) -> set[str]:
    """``count`` clips named ``prefix0.mp4``… moved into the inbox; returns their names."""
    names = set()
    for i in range(count):
        name = f"{prefix}{i}.mp4"
        d.drop(name, clip(seconds, name))
        names.add(name)
    return names


class TcpProxy:
    """A loopback TCP proxy in front of a server; `cut()` refuses and drops every connection until
    `restore()`, as a network partition or a database restart looks from the client."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> TcpProxy:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._stop.clear()
        threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def restore(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        a.setblocking(False)
        b.setblocking(False)
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.setblocking(True)
                    key.data.sendall(data)
                    key.data.setblocking(False)
        except OSError:
            return
        finally:
            sel.close()
            for s in (a, b):
                s.close()


@dataclass
class Report:
    rows: list[FaultResult] = field(default_factory=list)

    def add(self, row: FaultResult) -> None:
        self.rows.append(row)

    def table(self) -> str:
        lines = [f"{'fault':<44} {'files':>5} {'lost':>4} {'dup':>4} {'recovered in s':>15}  notes"]
        for r in self.rows:
            rec = "-" if r.recovered_s is None else f"{r.recovered_s:.1f}"
            lines.append(f"{r.fault:<44} {r.files:>5} {r.lost:>4} {r.duplicated:>4} {rec:>15}  {r.notes}")
        return "\n".join(lines)


REPORT = Report()
