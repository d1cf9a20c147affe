"""What the static-scene gate saves on camera footage, and whether it changes any answer (issue 16, part B).

A 10-minute camera-like clip (160x96, 10 fps, libx264 as a camera writes it): a still textured view with
Gaussian sensor noise (sigma 3 grey levels, fresh every frame: never bit-identical) and 30 s of a
person-sized box walking through it (5:00-5:30). ``WindowRecognizer.recognize`` with a tiny random
LLaVA-NeXT-Video analyses it in 10 s windows of 8 frames, for two targets, with the gate off and on
(``static_gate = 8``), in the same run.

- ``static_gate_speedup``: **model time** (``Recognition.model_ms``: scoring, and the best-frame search of
  matched windows) gate off ÷ gate on. Evidence is off, so the figure does not depend on what evidence
  costs. ``total_speedup`` is the same for the whole ``recognize`` call (decoding, which the gate does not
  save, included), ``cpu_speedup`` for its CPU time (steadier than wall time on a shared machine), and
  ``scoring_only_speedup`` the model-time ratio when no window matches. Torch runs one thread; gate-off
  and gate-on runs alternate and the best of ``--repeat`` of each is kept.
- ``static_gate_agreement``: the matched (window, target) pairs found in both runs ÷ those found in either
  (1.0: the same windows match with the gate on as off).

Tiny random models answer about 0.5 everywhere, so thresholds are chosen from a first, untimed gate-off run
(also the warm-up): per target, the middle of the widest gap between its window scores, so that some
windows match and the decision does not hang on a score's last digits.

``--measures`` instead compares candidate difference measures on the same clip's windows (against window
0, frames at 112 px): for each, the largest value among unchanged windows, the smallest among windows with
activity, and their ratio (the margin a threshold has to sit in; the gate uses ``grid16_max``).

Usage: PYTHONPATH=. python bench/throughput_gate.py [--keep DIR] [--repeat 2] [--measures] [--quick]. Ends
with one JSON line. ``--quick`` is a smoke run (a 1-minute clip with activity at 0:30-0:40, one repeat): it
proves the script runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from vigil.config.settings import ModelSettings
from vigil.formats.probe import probe
from vigil.ops.contracts import Recognition, TargetSpec
from workers.analysis.pipeline import WindowRecognizer
from workers.analysis.static_gate import difference, signature
from workers.decode.frames import FrameRequest, open_media, plan_windows
from workers.model.loading import load_model
from workers.testing.clips import write_camera_clip
from workers.testing.models import cached_tiny_model
from workers.testing.scenes import StaticScene

SECONDS, FPS, SIZE, ACTIVE_S = 600, 10, (160, 96), (300.0, 330.0)
QUICK_SECONDS, QUICK_ACTIVE_S = 60, (30.0, 40.0)
GATE = 8.0
DESCRIPTIONS = {"person": "a person walking", "van": "a white delivery van"}


def camera_clip(root: Path, seconds: int = SECONDS, active_s: tuple[float, float] = ACTIVE_S) -> Path:
    name = f"static_{seconds}s_{SIZE[0]}x{SIZE[1]}_{FPS}fps_active{active_s[0]:g}-{active_s[1]:g}.mp4"
    path = root / name
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr)
        part = path.with_suffix(".part.mp4")
        scene = StaticScene(active_s=active_s, noise=3.0)
        write_camera_clip(part, seconds=seconds, fps=FPS, size=SIZE, gop_s=4.0, frame=scene).rename(path)
    return path


def widest_gap_threshold(scores: list[float]) -> float:
    """The middle of the widest gap between sorted distinct scores: some windows above, some below."""
    ordered = sorted(set(scores))
    if len(ordered) < 2:
        return ordered[0] if ordered else 0.5
    low, high = max(zip(ordered, ordered[1:], strict=False), key=lambda pair: pair[1] - pair[0])
    return (low + high) / 2


@dataclass
class Timed:
    recognition: Recognition
    wall_ms: float  # the whole recognize call
    cpu_ms: float  # this process's CPU time in it: less sensitive than wall time to other processes


def matched_pairs(recognition: Recognition) -> set[tuple[int, int]]:
    return {(r.window_index, r.target_id) for r in recognition.results if r.matched}


def measure(
    keep: Path | None = None,
    repeat: int = 2,
    *,
    seconds: int = SECONDS,
    active_s: tuple[float, float] = ACTIVE_S,
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = keep or Path(tmp)
        clip = camera_clip(root, seconds, active_s)
        info = probe(clip)
        torch.set_num_threads(1)  # on a shared machine, one thread's time depends less on other processes
        loaded = load_model(str(cached_tiny_model("llava_next_video", root / "models")), device="cpu")
        settings = ModelSettings(id="tiny", frames_per_window=8, window_s=10.0, evidence=False)
        recognizer = WindowRecognizer(loaded, settings, thumbnails_dir=Path(tmp) / "thumbnails")

        def run(targets: list[TargetSpec], gate: float) -> Timed:
            wall, cpu = time.perf_counter(), time.process_time()
            got = recognizer.recognize(clip, info, targets, media_id=1, static_gate=gate)
            return Timed(got, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)

        def best(targets: list[TargetSpec]) -> tuple[Timed, Timed]:
            """Gate off and on, alternated so a change of load falls on both; the best of each."""
            runs = [(run(targets, 0.0), run(targets, GATE)) for _ in range(repeat)]
            off = min((r[0] for r in runs), key=lambda t: t.recognition.model_ms)
            on = min((r[1] for r in runs), key=lambda t: t.recognition.model_ms)
            return off, on

        never = [TargetSpec(i, name, text, 1.01) for i, (name, text) in enumerate(DESCRIPTIONS.items(), 1)]
        calibration = run(never, 0.0).recognition  # the warm-up, and the scores thresholds are chosen from
        targets = [
            TargetSpec(t.id, t.name, t.description, widest_gap_threshold(
                [r.p_yes for r in calibration.results if r.target_id == t.id]
            ))
            for t in never
        ]  # fmt: skip
        timed_off, timed_on = best(targets)
        plain_off, plain_on = best(never)
    off, on = timed_off.recognition, timed_on.recognition
    matched_off, matched_on = matched_pairs(off), matched_pairs(on)
    either = matched_off | matched_on
    scored_windows = len({r.window_index for r in on.results if not r.inherited})
    return {
        "static_gate_speedup": off.model_ms / on.model_ms,
        "static_gate_agreement": len(matched_off & matched_on) / len(either) if either else 1.0,
        "total_speedup": timed_off.wall_ms / timed_on.wall_ms,
        "cpu_speedup": timed_off.cpu_ms / timed_on.cpu_ms,
        "scoring_only_speedup": plain_off.recognition.model_ms / plain_on.recognition.model_ms,
        "windows": float(off.windows),
        "scored_windows_gate_on": float(scored_windows),
        "matched_pairs_gate_off": float(len(matched_off)),
        "matched_pairs_gate_on": float(len(matched_on)),
        "model_ms_gate_off": off.model_ms,
        "model_ms_gate_on": on.model_ms,
        "decode_ms_gate_off": off.decode_ms,
        "decode_ms_gate_on": on.decode_ms,
        "total_ms_gate_off": timed_off.wall_ms,
        "total_ms_gate_on": timed_on.wall_ms,
        "cpu_ms_gate_off": timed_off.cpu_ms,
        "cpu_ms_gate_on": timed_on.cpu_ms,
    }


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).mean(axis=-1)


def _hash_bits(rgb: np.ndarray, kind: str) -> np.ndarray:
    bits = []
    for frame in rgb:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if kind == "dhash":
            small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA)
            bits.append(small[:, 1:] > small[:, :-1])
        else:
            low = cv2.dct(cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA))[:8, :8]
            bits.append(low > np.median(low))
    return np.array(bits)


def compare_measures(
    keep: Path | None = None, *, seconds: int = SECONDS, active_s: tuple[float, float] = ACTIVE_S
) -> dict[str, float]:
    """Each candidate measure's margin between unchanged windows and windows with activity."""
    measures: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "grid16_max": lambda a, b: difference(signature(a), signature(b)),
        "mean_abs_diff": lambda a, b: float(np.abs(_grey(a) - _grey(b)).mean()),
        "dhash_bits": lambda a, b: float(
            (_hash_bits(a, "dhash") != _hash_bits(b, "dhash")).sum((1, 2)).max()
        ),
        "phash_bits": lambda a, b: float(
            (_hash_bits(a, "phash") != _hash_bits(b, "phash")).sum((1, 2)).max()
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        clip = camera_clip(keep or Path(tmp), seconds, active_s)
        with open_media(clip) as media:
            windows = plan_windows(media.timed_info, window_s=10.0, frames_per_window=8)
            requests = [FrameRequest(8, start_s=a, end_s=b, max_side=112) for a, b in windows]
            rgb = [frames.rgb for _, frames in media.frames(requests)]
    active = [a < active_s[1] and b > active_s[0] for a, b in windows]
    got: dict[str, float] = {}
    for name, measure in measures.items():
        values = [measure(rgb[0], window) for window in rgb[1:]]
        quiet = max(v for v, busy in zip(values, active[1:], strict=True) if not busy)
        busy = min(v for v, busy in zip(values, active[1:], strict=True) if busy)
        got |= {f"{name}_unchanged_max": quiet, f"{name}_active_min": busy, f"{name}_margin": busy / quiet}
        print(f"{name:14} unchanged <= {quiet:6.2f}   activity >= {busy:6.2f}   margin {busy / quiet:5.1f}x")
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="cache the clip and the tiny model here")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per case; the best is kept")
    parser.add_argument("--measures", action="store_true", help="compare difference measures instead")
    parser.add_argument("--quick", action="store_true", help="smoke run: a 1-minute clip (no figures)")
    args = parser.parse_args()
    seconds, active_s = (QUICK_SECONDS, QUICK_ACTIVE_S) if args.quick else (SECONDS, ACTIVE_S)
    if args.quick:
        args.repeat = 1
    if args.measures:
        got = compare_measures(args.keep, seconds=seconds, active_s=active_s)
        print(json.dumps({"bench": "throughput_gate.measures", "quick": args.quick, **got}))
        return
    got = measure(args.keep, args.repeat, seconds=seconds, active_s=active_s)
    active = f"{active_s[0]:g}-{active_s[1]:g} s"
    print(f"{seconds // 60}-minute camera clip, {got['windows']:.0f} windows, activity {active}")
    print(f"{'':16}{'gate off':>12}{'gate on':>12}")
    rows = (
        ("model ms", "model_ms"),
        ("decode ms", "decode_ms"),
        ("total ms", "total_ms"),
        ("cpu ms", "cpu_ms"),
    )
    for label, key in rows:
        print(f"{label:16}{got[key + '_gate_off']:12.0f}{got[key + '_gate_on']:12.0f}")
    print(f"{'matched pairs':16}{got['matched_pairs_gate_off']:12.0f}{got['matched_pairs_gate_on']:12.0f}")
    print(f"scored windows with the gate on: {got['scored_windows_gate_on']:.0f}")
    print(
        f"model-time speedup {got['static_gate_speedup']:.1f}x "
        f"(no match: {got['scoring_only_speedup']:.1f}x), total {got['total_speedup']:.1f}x, "
        f"CPU {got['cpu_speedup']:.1f}x, "
        f"agreement {got['static_gate_agreement']:.3f}"
    )
    print(json.dumps({"bench": "throughput_gate", "quick": args.quick, "static_gate": GATE, **got}))


if __name__ == "__main__":
    main()
