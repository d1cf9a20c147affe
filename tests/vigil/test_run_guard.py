"""`vigil run` as an operator meets it (issue 22, items 4 and 5), with real processes and real sockets: one
run per data directory, a busy port refused at start in one line naming its setting, and an optional
component (the review page) that fails later never stopping the analysis."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import Stack, child_pids, wait_for
from tests.support.services import free_port
from vigil.ops.instance import LOCK_NAME
from vigil.ops.supervisor import ChildSpec, Supervisor
from workers.testing.clips import write_clip_mp4v

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path, tiny_llava: Path) -> Iterator[Stack]:
    made = Stack(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
    )
    assert made.vigil("db", "upgrade").returncode == 0
    yield made
    made.stop_all()


def run_once(stack: Stack, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`vigil ARGS` to its end; one that does not end within a minute was not refused."""
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args],
        cwd=stack.root,
        env=stack.env | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def log_of(stack: Stack, name: str) -> str:
    return (stack.root / f"{name}.log").read_text(errors="replace")


@contextmanager
def occupied(host: str, port: int) -> Iterator[socket.socket]:
    """Another program listening on host:port."""
    sock = socket.socket()
    sock.bind((host, port))
    sock.listen(1)
    try:
        yield sock
    finally:
        sock.close()


def error_lines(stderr: str) -> list[str]:
    """What the command said besides its log records (which begin with their time)."""
    return [line for line in stderr.splitlines() if line.strip() and not line[:4].isdigit()]


def test_a_second_run_on_one_data_directory_is_refused_and_the_lock_never_outlives_the_first(
    stack: Stack,
) -> None:
    first = stack.spawn("first", "-m", "vigil", "run", "--watch", str(stack.inbox), new_session=True)
    wait_for(lambda: "started watcher" in log_of(stack, "first"), timeout=120, what="the first run")
    # Its own review port, so that only the data directory is shared.
    second = run_once(stack, "run", "--watch", str(stack.inbox), env={"VIGIL_WEB__PORT": str(free_port())})
    assert second.returncode == 2, second.stderr
    data_dir = stack.root / "data"
    assert error_lines(second.stderr) == [
        f"error: another `vigil run` (pid {first.pid}) already uses the data directory {data_dir}: stop it "
        "first, or give this one its own storage.data_dir (VIGIL_STORAGE__DATA_DIR)"
    ]
    assert "started" not in second.stdout + second.stderr

    os.killpg(first.pid, signal.SIGKILL)  # a crash: the run and every child it started
    first.wait(timeout=10)
    wait_for(lambda: not child_pids(first.pid), timeout=10, what="the children gone")
    third = stack.spawn("third", "-m", "vigil", "run", "--watch", str(stack.inbox))
    wait_for(lambda: "started watcher" in log_of(stack, "third"), timeout=120, what="a run after the crash")
    third.send_signal(signal.SIGTERM)
    assert third.wait(timeout=60) == 0, stack.dump_logs()
    with (data_dir / LOCK_NAME).open("rb") as lock:  # released on a clean exit too
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.parametrize(
    ("setting", "env", "host", "offset"),
    [
        ("web.port", "VIGIL_WEB__PORT", "127.0.0.1", 0),
        ("metrics.watcher_port", "VIGIL_METRICS__WATCHER_PORT", "0.0.0.0", 0),
        ("metrics.worker_port", "VIGIL_METRICS__WORKER_PORT", "0.0.0.0", 1),  # the cpu worker's: port + 1
    ],
)
def test_a_busy_port_is_one_line_at_start_naming_its_setting(
    stack: Stack, setting: str, env: str, host: str, offset: int
) -> None:
    port = int(stack.env[env]) + offset
    with occupied(host, port):
        result = run_once(stack, "run", "--watch", str(stack.inbox))
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: ") and f":{port}: Address already in use; set {setting} (or {env})" in line
    assert "started" not in result.stderr  # nothing was started


def test_vigil_web_on_a_busy_port_says_so_in_one_line_without_a_false_review_page_line(stack: Stack) -> None:
    port = int(stack.env["VIGIL_WEB__PORT"])
    with occupied("127.0.0.1", port):
        result = run_once(stack, "web")
    assert result.returncode == 2, result.stderr
    assert "review page at" not in result.stderr and "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [
        f"web: the review page cannot listen on 127.0.0.1:{port}: Address already in use; "
        "set web.port (or VIGIL_WEB__PORT) to a free port, or pass --port"
    ], result.stderr


def pid_of(run_pid: int, module: str) -> int | None:
    for pid in child_pids(run_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if module.encode() in argv:
            return pid
    return None


def test_a_review_page_that_keeps_failing_later_never_stops_the_analysis(stack: Stack) -> None:
    """The review page's port is taken after the start (the page was killed, another program took the
    port): the page crash-loops, is reported and retried, and files are still analysed."""
    port = int(stack.env["VIGIL_WEB__PORT"])
    run = stack.spawn("run", "-m", "vigil", "run", "--watch", str(stack.inbox), "--no-cpu-worker")
    wait_for(lambda: "review page at" in log_of(stack, "run"), timeout=120, what="the review page")
    web = pid_of(run.pid, "vigil.web")
    assert web is not None
    os.kill(web, signal.SIGKILL)
    taken = wait_until_bound(port)
    try:
        wait_for(lambda: "web keeps failing" in log_of(stack, "run"), timeout=150, what="the crash loop")
        assert run.poll() is None, stack.dump_logs()
        write_clip_mp4v(stack.root / "clip.mp4", seconds=1, fps=5, size=(48, 36))
        os.replace(stack.root / "clip.mp4", stack.inbox / "clip.mp4")
        wait_for(lambda: stack.statuses().get("clip.mp4") == "done", timeout=180, what="the clip analysed")
        assert run.poll() is None
    finally:
        taken.close()
    text = log_of(stack, "run")
    assert "giving up" not in text
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use; set web.port" in text


def wait_until_bound(port: int) -> socket.socket:
    """Take the port as soon as the killed page let it go."""
    deadline = time.monotonic() + 10
    while True:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_the_supervisor_retries_an_optional_child_for_ever_and_gives_up_on_an_essential_one(
    tmp_path: Path,
) -> None:
    """Real child processes: one that runs, one that exits at once (counting its starts in a file)."""
    starts = tmp_path / "starts"
    crash = [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"]
    runs = [sys.executable, "-c", "import time; time.sleep(120)"]
    quick = {"max_restarts": 2, "window_s": 60.0, "backoff_max_s": 0.1, "optional_backoff_max_s": 0.1}

    supervisor = Supervisor([ChildSpec("analysis", runs), ChildSpec("page", crash, optional=True)], **quick)
    thread = threading.Thread(target=lambda: supervisor.run(poll_s=0.05))
    thread.start()
    try:
        wait_for(lambda: starts.exists() and len(starts.read_text()) >= 6, timeout=30, what="six crashes")
        assert thread.is_alive() and supervisor.failure is None
        analysis = supervisor.children[0].process
        assert analysis is not None and analysis.poll() is None
    finally:
        supervisor.stopping.set()
        thread.join(timeout=30)

    starts.unlink()
    essential = Supervisor([ChildSpec("analysis", crash), ChildSpec("page", runs, optional=True)], **quick)
    assert essential.run(poll_s=0.05) == 1
    assert essential.failure == "analysis crashed 3 times in 60 s"
