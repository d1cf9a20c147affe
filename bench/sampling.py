"""Frame sampling: the seed recipe (read every frame, keep every k-th) against workers.frames.sample_frames.

Writes (once, cached by parameters) three 60 s 1280x720 30 fps clips: mp4v from OpenCV's writer (OpenCV 5
puts a keyframe every ~2 frames), mp4v (MPEG-4 Part 2) from PyAV with a keyframe every 12 frames like camera
files, and long-GOP H.264 (keyframe every 250, B-frames) from PyAV. Then times, for 8 and 32 frames, best
of ``--repeat``:

* seed:  the seed recipe, copied from the transformers video-text-to-text guide (colour conversion kept,
         PIL wrapping dropped since it is the same for both sides);
* opencv / pyav: ``sample_frames(backend=...)``, exact mode on every clip, keyframe mode on H.264.

Usage: python bench/sampling.py [--keep DIR] [--repeat 3]. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from vigil.media import probe
from workers.frames import sample_frames
from workers.testing.clips import write_clip_h264, write_clip_mp4v, write_clip_mpeg4

SECONDS, FPS, SIZE = 60, 30, (1280, 720)


def seed_sample_frames(path: str, num_frames: int) -> list:
    """The seed's recipe, faithfully: every frame is read; ``i % interval == 0`` is kept."""
    video = cv2.VideoCapture(path)
    total_frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    interval = total_frames // num_frames
    frames = []
    for i in range(total_frames):
        ret, frame = video.read()
        if not ret:
            continue
        if i % interval == 0:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    video.release()
    return frames


def clips(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    key = f"{SECONDS}s_{SIZE[0]}x{SIZE[1]}_{FPS}fps"
    mp4v, h264 = root / f"mp4v_{key}.mp4", root / f"h264_gop250_b2_{key}.mp4"
    mpeg4 = root / f"mpeg4_gop12_{key}.mp4"
    if not mp4v.exists():
        print(f"writing {mp4v} ...", file=sys.stderr)
        write_clip_mp4v(mp4v.with_suffix(".part.mp4"), seconds=SECONDS, fps=FPS, size=SIZE).rename(mp4v)
    if not mpeg4.exists():
        print(f"writing {mpeg4} ...", file=sys.stderr)
        write_clip_mpeg4(mpeg4.with_suffix(".part.mp4"), seconds=SECONDS, fps=FPS, size=SIZE,
                         gop=12).rename(mpeg4)
    if not h264.exists():
        print(f"writing {h264} ...", file=sys.stderr)
        write_clip_h264(h264.with_suffix(".part.mp4"), seconds=SECONDS, fps=FPS, size=SIZE,
                        gop=250, bframes=2).rename(h264)
    return {"mp4v-cv": mp4v, "mp4v-g12": mpeg4, "h264": h264}


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(root: Path, repeat: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for codec, path in clips(root).items():
        info = probe(path)
        modes = ["exact", "keyframe"] if codec == "h264" else ["exact"]
        for n in (8, 32):
            base = best_of(repeat, lambda p=path, n=n: seed_sample_frames(str(p), n))
            for mode in modes:
                row: dict[str, object] = {"clip": codec, "frames": n, "mode": mode,
                                          "baseline_s": round(base, 4)}
                for backend in ("opencv", "pyav"):  # one decoder now (PyAV): rewritten next
                    ours = best_of(repeat, lambda p=path, n=n, m=mode, i=info: sample_frames(
                        p, num_frames=n, mode=m, info=i))
                    got = sample_frames(path, num_frames=n, mode=mode, info=info)
                    row |= {f"{backend}_s": round(ours, 4), f"{backend}_ratio": round(base / ours, 1),
                            f"{backend}_distinct": len(set(got.timestamps_s))}
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="directory to cache the clips in (kept between runs)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.gettempdir()) / "vigil-bench-sampling"
    rows = run(root, args.repeat)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'clip':8} {'N':>3} {'mode':8} {'seed s':>7} | {'opencv s':>8} {'ratio':>6} {'dist':>4} | "
          f"{'pyav s':>7} {'ratio':>6} {'dist':>4}")
    for r in rows:
        print(f"{r['clip']:8} {r['frames']:>3} {r['mode']:8} {r['baseline_s']:>7.3f} | {r['opencv_s']:>8.3f} "
              f"{r['opencv_ratio']:>5.1f}x {r['opencv_distinct']:>4} | {r['pyav_s']:>7.3f} "
              f"{r['pyav_ratio']:>5.1f}x {r['pyav_distinct']:>4}")
    print(f"peak RSS {peak_mb:.0f} MB (whole process, baseline included)")
    print(f"load average at the end: {Path('/proc/loadavg').read_text().strip()}")
    print(json.dumps({"bench": "sampling", "clip": f"{SECONDS}s {SIZE[0]}x{SIZE[1]} {FPS}fps",
                      "repeat": args.repeat, "rows": rows, "peak_rss_mb": round(peak_mb, 1)}))


if __name__ == "__main__":
    main()
