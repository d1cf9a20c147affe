"""Issue 16's throughput figures in one run: what a match costs over a miss, what the static-scene gate
saves, what decoding ahead of the model buys, and whether batched windows score as one by one.

Each part is its own script, run here in a child process of its own, because each sets process-wide
state its figure depends on (torch's thread count, the GIL switch interval, FFmpeg's threads):
- bench/throughput_reuse.py: evidence from the window's kept encoding, the batched best frame
  (`matched_vs_unmatched_no_evidence`, `evidence_vs_generation`, `matched_vs_unmatched`);
- bench/throughput_gate.py: a 10-minute camera clip with 30 s of activity, gate on vs off
  (`static_gate_speedup`, `static_gate_agreement`);
- bench/throughput_overlap.py: decode ahead vs in line on clips whose decode time is near the model's
  (`overlap_speedup`), batched vs one-by-one windows (`batched_windows_equal`).
Every ratio is measured against its baseline in the same child, on this machine, with tiny models on the
CPU. Prints each part's table, the goals, and ends with one JSON line.

    PYTHONPATH=. python bench/throughput.py [--quick] [--part reuse]

``--quick`` runs each part with its own ``--quick`` (a smoke run: tiny inputs, it measures nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

PARTS = {"reuse": "throughput_reuse.py", "gate": "throughput_gate.py", "overlap": "throughput_overlap.py"}

# key -> (goal, "<=" or ">="), from the issue; None: reported only
GOALS: dict[str, tuple[float, str] | None] = {
    "matched_vs_unmatched_no_evidence": (2.0, "<="),
    "evidence_vs_generation": (1.2, "<="),
    "matched_vs_unmatched": None,
    "static_gate_speedup": (5.0, ">="),
    "static_gate_agreement": (1.0, ">="),
    "overlap_speedup": (1.5, ">="),
    "batched_windows_equal": (1e-4, "<="),
}


def run_part(name: str, quick: bool) -> dict[str, Any]:
    script = PARTS[name]
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(HERE / script), *(["--quick"] if quick else [])],
        capture_output=True,
        text=True,
        env=os.environ
        | {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))},
        check=False,
    )
    print(f"== {script} ({time.perf_counter() - began:.0f} s)")
    print(done.stdout.rstrip())
    if done.returncode != 0:
        raise SystemExit(f"{script} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {key: value for key, value in figures.items() if key not in ("bench", "quick")}


def verdict(key: str, value: float) -> str:
    goal = GOALS[key]
    if goal is None:
        return "reported"
    bound, sense = goal
    met = value <= bound if sense == "<=" else value >= bound
    return f"{'met' if met else 'MISSED'} (goal {sense} {bound:g})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: each part's --quick (no figures)")
    parser.add_argument("--part", choices=sorted(PARTS), action="append", help="run only these parts")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    figures: dict[str, Any] = {}
    for name in args.part or list(PARTS):
        figures |= run_part(name, args.quick)
    print("== goals")
    summary = {key: figures[key] for key in GOALS if key in figures}
    for key, value in summary.items():
        print(f"  {key:36s} {value:>10.4g}  {verdict(key, value)}")
    result = {
        "bench": "throughput",
        "quick": args.quick,
        **summary,
        "goals": {key: verdict(key, value) for key, value in summary.items()},
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "parts": figures,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
