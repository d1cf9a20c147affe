"""A whole file through the real pipeline at real size: every window matched against nothing matched, and
the static gate on against off, on camera-like footage (issue 27).

``bench/realsize.py`` times each phase of one window and counts evidence and the best frame on every
window: the worst case. This bench runs ``WindowRecognizer.recognize`` (the worker's decode path with its
prefetch thread, the scoring, the default ``evidence_windows = "best_of_run"``, thumbnails, the static
gate) over a camera-like clip with SmolVLM2 built at its published size with random weights
(``bench/realsize_models.py``; 500M, the default model, unless told), 8 targets, windows of 10 s with 8
frames. The clip (``--windows`` x 10 s, 1280x720 H.264): a still textured view with sensor noise (sigma 3
grey levels, fresh every frame) and a person-sized box walking across it during ``--active`` seconds
(``workers.testing.scenes.StaticScene``). Thresholds decide what matches: 1.01 (nothing) or 0 (every
window, every target: random weights answer about 0.5 everywhere). Cases, in this order, in one process:

- a warm-up first, untimed in the cases (``warm_up_s``): one 10 s window of the same scene, every target
  matched (scoring, evidence and the best-frame search each run once). A worker process warms up once,
  not once a file; without it the first case carried about 5 s (int8) of first-call costs;
- ``all``: every window matched, gate off;
- ``none``: nothing matched, gate off: the baseline; ``matched_over_unmatched`` is all ÷ none, in CPU
  seconds (steadier on a shared machine) and in wall seconds;
- ``gate``: nothing matched, ``static_gate = --gate``: ``gate_speedup`` is none ÷ gate;
- ``every`` (with ``--every-match``): every window matched with ``evidence_windows = "every_match"``,
  evidence and the best-frame search on every matched window (the behaviour before ``best_of_run``).

``gate_measures``: the gate's measure (``workers.analysis.static_gate``: the largest change of one cell of
a 16-wide grid, grey levels) of each window against window 0, at the model's frame size, for the main
clip and for clips whose walking box is scaled by each of ``--boxes`` (1: a tenth of the width by a third
of the height; 0.25: a quarter of that each way). ``unchanged_max``: the largest among windows without the
box; ``active_min``: the smallest among windows with it; ``missed``: windows with the box that the gate at
``--gate`` would let inherit. Those clips are decoded only (no model).

    PYTHONPATH=. nice python bench/realsize_matched.py [--model 500m] [--precision fp32] [--windows 6]
    PYTHONPATH=. python bench/realsize_matched.py --quick   # a tiny model, a small clip: proves it runs

Torch runs ``--threads`` threads (1 by default: per CPU second, as docs/operations.md's Sizing figures).
Each case reports footage seconds per wall second (``footage_per_s``, what a camera needs) and per CPU
second of the process (``footage_per_cpu_s``, all its threads), and ``neighbours``: the CPU time the rest
of the machine took meanwhile (``bench/machine.py``), so a run that was not quiet says so. Ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realsize_models as sizes
from machine import Neighbours, cpu

from vigil.config.settings import ModelSettings
from vigil.formats.probe import probe
from vigil.ops.contracts import Recognition, TargetSpec
from workers.analysis.pipeline import WindowRecognizer
from workers.analysis.static_gate import StaticGate, difference, signature
from workers.analysis.thumbnails import THUMBNAIL_MAX_SIDE
from workers.decode.frames import analysis_requests, open_media, plan_windows
from workers.testing.clips import write_camera_clip
from workers.testing.scenes import StaticScene

WINDOW_S, FRAMES, SIZE, QUICK_SIZE = 10.0, 8, (1280, 720), (160, 96)
DESCRIPTIONS = [
    f"a person carrying a {c} bag"
    for c in ("red", "blue", "green", "black", "white", "brown", "grey", "pink")
]
NEVER, ALWAYS = 1.01, 0.0


def camera_clip(
    path: Path, *, windows: int, active_s: tuple[float, float], fps: int, size: tuple[int, int], box: float
) -> Path:
    scene = StaticScene(active_s=active_s, noise=3.0, box=box)
    return write_camera_clip(path, seconds=windows * WINDOW_S, fps=fps, size=size, gop_s=4.0, frame=scene)


def gate_measures(clip: Path, side: int, active_s: tuple[float, float], gate: float) -> dict[str, Any]:
    """The gate's measure of each window against window 0 at the model's frame size, and which windows
    the gate at ``gate`` scores (decoding only, as the worker decodes them)."""
    with open_media(clip, info=probe(clip)) as media:
        spans = plan_windows(media.timed_info, window_s=WINDOW_S, frames_per_window=FRAMES)
        requests = analysis_requests(
            spans, FRAMES, mode="exact", max_side=side, full_side=THUMBNAIL_MAX_SIDE, caption=False
        )
        frames = [f for _, f in media.frames(requests)]
    cells = [signature(f.rgb) for f in frames]
    against_first = [round(difference(cells[0], c), 2) for c in cells]
    active = [a < active_s[1] and b > active_s[0] for a, b in spans]
    decider = StaticGate(gate)
    scored = [i for i, f in enumerate(frames) if decider.reference(i, f) is None]
    quiet = [v for v, busy in zip(against_first[1:], active[1:], strict=True) if not busy]
    busy = [v for v, b in zip(against_first, active, strict=True) if b]
    return {
        "frame": list(frames[0].rgb.shape[1:3]),
        "against_window_0": against_first,
        "active_windows": [i for i, b in enumerate(active) if b],
        "unchanged_max": max(quiet) if quiet else None,
        "active_min": min(busy) if busy else None,
        "scored_at_gate": scored,
        "missed": [i for i, b in enumerate(active) if b and i not in scored],
    }


def run_case(
    recognizer: WindowRecognizer, clip: Path, threshold: float, gate: float, *, media_id: int
) -> tuple[Recognition, dict[str, Any]]:
    """One ``recognize`` call, timed: wall and this process's CPU seconds (all threads)."""
    targets = [TargetSpec(i, f"t{i}", d, threshold) for i, d in enumerate(DESCRIPTIONS, 1)]
    info = probe(clip)
    with Neighbours() as seen:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        got = recognizer.recognize(clip, info, targets, media_id=media_id, static_gate=gate)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    footage = info.duration_s or got.windows * WINDOW_S
    matched = [r for r in got.results if r.matched]
    best_frame = re.compile(r"w\d+-t\d+\.jpg")  # a best-frame search's thumbnail; not -middle, -inherited
    searched = {r.thumbnail_path for r in matched if best_frame.fullmatch(Path(r.thumbnail_path or "").name)}
    return got, {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "model_s": round(got.model_ms / 1000, 1),
        "decode_wait_s": round(got.decode_ms / 1000, 1),
        "windows": got.windows,
        "scored_windows": len({r.window_index for r in got.results if not r.inherited}),
        "matched": len(matched),
        "evidence_texts": sum(1 for r in matched if r.evidence is not None),
        "evidence_windows": len({r.window_index for r in matched if r.evidence is not None}),
        "best_frame_thumbnails": len(searched),  # one per (run, target)
        "best_frame_windows": len({Path(t).name.split("-")[0] for t in searched}),  # one search each
        "footage_per_s": round(footage / wall, 3),
        "footage_per_cpu_s": round(footage / cpu, 3),
        "neighbours": seen.report(),
    }


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start_s, end_s = (float(x) for x in args.active.split(","))
    active_s = (start_s, end_s)
    size = QUICK_SIZE if args.quick else SIZE
    began = time.perf_counter()
    clip = camera_clip(
        root / "camera.mp4", windows=args.windows, active_s=active_s, fps=args.fps, size=size, box=1.0
    )
    write_s = time.perf_counter() - began
    began = time.perf_counter()
    precision = "float" if args.precision == "fp32" else args.precision
    loaded = sizes.loaded(args.model, precision=precision)
    load_s = time.perf_counter() - began
    measures = {"1": gate_measures(clip, loaded.frame_side, active_s, args.gate)}
    for box in [float(b) for b in args.boxes.split(",") if b and float(b) != 1.0]:
        other = camera_clip(
            root / f"box{box:g}.mp4",
            windows=args.windows,
            active_s=active_s,
            fps=args.fps,
            size=size,
            box=box,
        )
        measures[f"{box:g}"] = gate_measures(other, loaded.frame_side, active_s, args.gate)
        other.unlink()

    def recognizer(policy: str) -> WindowRecognizer:
        settings = ModelSettings(
            id=loaded.name,
            frames_per_window=FRAMES,
            window_s=WINDOW_S,
            evidence_max_tokens=args.evidence_tokens,
            evidence_windows=policy,  # type: ignore[arg-type]
        )
        return WindowRecognizer(loaded, settings, thumbnails_dir=root / "thumbnails" / policy)

    warm = camera_clip(root / "warm.mp4", windows=1, active_s=active_s, fps=args.fps, size=size, box=1.0)
    _, warm_up = run_case(recognizer("best_of_run"), warm, ALWAYS, 0.0, media_id=0)
    cases: dict[str, dict[str, Any]] = {}
    results: dict[str, Recognition] = {}
    plan = [("all", "best_of_run", ALWAYS, 0.0), ("none", "best_of_run", NEVER, 0.0)]
    plan += [("gate", "best_of_run", NEVER, args.gate)]
    plan += [("every", "every_match", ALWAYS, 0.0)] if args.every_match else []
    for media_id, (name, policy, threshold, gate) in enumerate(plan, 1):
        results[name], cases[name] = run_case(recognizer(policy), clip, threshold, gate, media_id=media_id)
        print(f"{name}: {json.dumps(cases[name])}", file=sys.stderr, flush=True)
    scores = {n: [r.p_yes for r in results[n].results] for n in ("all", "none")}
    none, all_, gate = cases["none"], cases["all"], cases["gate"]
    out: dict[str, Any] = {
        "model": args.model,
        "precision": args.precision,
        "threads": args.threads,
        "cpu": cpu(),
        "clip": {
            "size": list(size),
            "fps": args.fps,
            "seconds": args.windows * WINDOW_S,
            "active_s": active_s,
        },
        "write_s": round(write_s, 1),
        "load_s": round(load_s, 1),
        "warm_up_s": warm_up["wall_s"],
        "cases": cases,
        "matched_over_unmatched": {
            "cpu": round(all_["cpu_s"] / none["cpu_s"], 3),
            "wall": round(all_["wall_s"] / none["wall_s"], 3),
        },
        "scores_equal_all_vs_none": scores["all"] == scores["none"],
        "matched_extra_model_s": round(all_["model_s"] - none["model_s"], 1),  # evidence and best frames
        "gate_speedup": {
            "cpu": round(none["cpu_s"] / gate["cpu_s"], 3),
            "wall": round(none["wall_s"] / gate["wall_s"], 3),
        },
        "gate": args.gate,
        "gate_measures": measures,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    if args.every_match:
        out["every_over_unmatched_cpu"] = round(cases["every"]["cpu_s"] / none["cpu_s"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model on a small clip: seconds")
    parser.add_argument("--model", default="500m", help=f"one of {', '.join(sizes.SIZES)}")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    parser.add_argument("--windows", type=int, default=6, help="10 s windows in the clip")
    parser.add_argument("--active", default="20,30", help="seconds the box walks through: START,END")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--gate", type=float, default=8.0, help="the static gate's threshold for 'gate'")
    parser.add_argument("--boxes", default="1,0.5,0.25,0.125", help="box scales whose gate measure to take")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--every-match", action="store_true", help="also the every_match worst case")
    parser.add_argument(
        "--evidence-tokens",
        type=int,
        default=ModelSettings().evidence_max_tokens,
        help="the worker's default",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.windows, args.active, args.boxes = "tiny", 3, "10,20", "1,0.5"
        args.evidence_tokens, args.every_match = 4, True
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vigil-realsize-matched-") as tmp:
        got = measure(args, Path(tmp))
    c, ratio, speedup = got["cases"], got["matched_over_unmatched"], got["gate_speedup"]
    print(
        f"{args.model} {args.precision} x{args.threads}, {args.windows} windows, 8 targets: CPU s "
        f"all matched {c['all']['cpu_s']} / nothing matched {c['none']['cpu_s']} = {ratio['cpu']}x "
        f"(wall {ratio['wall']}x); gate {args.gate:g}: {c['gate']['scored_windows']} of "
        f"{c['gate']['windows']} windows scored, {speedup['cpu']}x less CPU; footage s per wall s "
        f"none {c['none']['footage_per_s']}, all {c['all']['footage_per_s']}, "
        f"gate {c['gate']['footage_per_s']} (per CPU s {c['none']['footage_per_cpu_s']}, "
        f"{c['all']['footage_per_cpu_s']}, {c['gate']['footage_per_cpu_s']}); quiet: "
        f"{all(case['neighbours']['quiet'] for case in c.values())}",
        file=sys.stderr,
    )
    print(json.dumps({"bench": "realsize_matched", "quick": args.quick, **got,
                      "total_s": round(time.perf_counter() - began, 1)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
