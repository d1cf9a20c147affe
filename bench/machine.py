"""How quiet the machine was while a bench ran: the CPU time other processes took beside it.

A wall-clock figure on a shared 2-core machine measures the neighbours as much as the code; a load average
says little (it counts waiting tasks, not who ran). ``Neighbours`` reads the kernel's busy time of all cores
(``/proc/stat``) and this process's own CPU time (its threads and waited-for children) at the start and the
end of a run: what the machine spent beyond that is the neighbours' share. ``quiet`` is true when they took
under ``QUIET_SHARE`` of the machine's cores over the run. Linux only; elsewhere the fields are None.
"""

from __future__ import annotations

import os
import time
from typing import Any

QUIET_SHARE = 0.05  # the neighbours' share of all cores under which a run counts as quiet
# the /proc/cpuinfo flags that choose the kernels of fp32, int8 and bf16 GEMMs
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> dict[str, Any]:
    """The processor's model name and which of ``ISA_FLAGS`` it has (empty where /proc/cpuinfo is not)."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": name, "isa": [f for f in ISA_FLAGS if f in flags], "cores": os.cpu_count()}


def _busy_s() -> float | None:
    """Seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Neighbours:
    """Use as ``with Neighbours() as seen: ...``; then ``seen.report()``."""

    def __enter__(self) -> Neighbours:
        self.wall0, self.busy0, self.own0 = time.perf_counter(), _busy_s(), _own_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.busy1, self.own1 = time.perf_counter() - self.wall0, _busy_s(), _own_s()

    def report(self) -> dict[str, Any]:
        """``others_cpu_s``: CPU seconds the rest of the machine used during the run; ``others_share``:
        that over all cores' time; ``quiet``: the share under ``QUIET_SHARE``."""
        cores = os.cpu_count() or 1
        if self.busy0 is None or self.busy1 is None:
            return {"cores": cores, "others_cpu_s": None, "others_share": None, "quiet": None}
        others = max(0.0, (self.busy1 - self.busy0) - (self.own1 - self.own0))
        share = others / (self.wall * cores) if self.wall > 0 else 0.0
        return {
            "cores": cores,
            "others_cpu_s": round(others, 1),
            "others_share": round(share, 3),
            "quiet": share < QUIET_SHARE,
        }
