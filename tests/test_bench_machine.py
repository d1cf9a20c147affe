"""bench/machine.py: the CPU time other processes took beside a bench run, and the CPU it ran on; and
bench/flops.py: attention on the CPU is counted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.bench_modules import bench_module

BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


@pytest.fixture(scope="module")
def machine():
    return bench_module("machine")


def _neighbour(seconds: float) -> int:
    """A process that burns ``seconds`` of CPU and is not this one's child: a launcher starts it and exits
    without waiting for it, so its time never reaches this process's children's times (``os.times``)."""
    launch = (
        "import subprocess, sys; "
        "print(subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.DEVNULL).pid)"
    )
    done = subprocess.run(
        [sys.executable, "-c", launch, BURN.format(s=seconds)], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")  # exited; reaped or not by whoever adopted it


def test_a_neighbour_burning_a_core_is_seen(machine):
    """Another process burns 1 CPU s during the run: counted as the neighbours', not as this process's."""
    with machine.Neighbours() as seen:
        pid = _neighbour(1.0)
        deadline = time.monotonic() + 30
        while not _ended(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _ended(pid)
    assert seen.own1 - seen.own0 < 0.5  # its second is not this process's (nor its waited children's)
    report = seen.report()
    assert report["others_cpu_s"] >= 0.8  # other processes on the machine can only add to it
    assert report["quiet"] is False and report["others_share"] > machine.QUIET_SHARE


def test_own_threads_are_not_neighbours(machine, monkeypatch):
    """All cores' busy time minus this process's own: 3 s busy of which 2 s ours -> 1 s the neighbours'."""
    readings = iter([100.0, 103.0])
    own = iter([10.0, 12.0])
    monkeypatch.setattr(machine, "_busy_s", lambda: next(readings))
    monkeypatch.setattr(machine, "_own_s", lambda: next(own))
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    with machine.Neighbours() as seen:
        pass
    seen.wall = 10.0
    report = seen.report()
    assert report["others_cpu_s"] == 1.0 and report["others_share"] == 0.05 and report["quiet"] is False


def test_the_cpu_is_named(machine):
    info = machine.cpu()
    assert info["cores"] >= 1 and set(info["isa"]) <= set(machine.ISA_FLAGS)
    if Path("/proc/cpuinfo").exists():
        assert info["model"]


def test_cpu_attention_is_counted():
    """torch's own counter gives 0 for the CPU attention kernel; bench/flops.py's counts its two products."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = bench_module("flops").counter
    q = k = v = torch.randn(2, 3, 16, 8)  # batch, heads, tokens, head size
    plain, ours = FlopCounterMode(display=False), counter()
    with plain:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    with ours:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert ours.get_total_flops() == 2 * (2 * 2 * 3 * 16 * 16 * 8)  # q.k^T and scores.v, 2 FLOPs a MAC
    assert plain.get_total_flops() in (0, ours.get_total_flops())  # 0 until torch registers the kernel


def test_onednn_linear_is_counted_as_its_product():
    """The worker's CPU linear (workers/model/cpu_kernels.py) counts what the same nn.Linear counts."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from workers.model.cpu_kernels import use_onednn_linears

    counter = bench_module("flops").counter
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    x = torch.randn(3, 5, 8)
    plain, ours = FlopCounterMode(display=False), counter()
    with torch.inference_mode(), plain:
        mlp(x)
    assert use_onednn_linears(mlp) == 2
    with torch.inference_mode(), ours:
        mlp(x)
    assert plain.get_total_flops() == ours.get_total_flops() == 2 * 15 * (8 * 16 + 16 * 4)
