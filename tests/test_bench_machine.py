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


def test_a_neighbour_burning_a_core_is_seen(machine):
    """A process this one does not wait for burns 1 CPU s during the run: counted as the neighbours'."""
    with machine.Neighbours() as seen:
        neighbour = subprocess.Popen([sys.executable, "-c", BURN.format(s=1.0)])
        while neighbour.poll() is None:
            time.sleep(0.05)
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
