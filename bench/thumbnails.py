"""What source-resolution thumbnails cost: the decode pass of a whole clip's windows for the model
(8 frames at 224 px each) with and without the thumbnail candidates (each frame also converted at source
resolution capped at 1280 px, ``FrameRequest.full_side``) and a JPEG of each window's middle frame, measured
in the same run. No frame is decoded again for a thumbnail: the difference is conversion and encoding.

Writes (once, cached by parameters) a 20 s 1920x1080 30 fps H.264 clip twice: a keyframe every 250 frames
(camera-like, B-frames) and every 30. Best of ``--repeat``.

Usage: python bench/thumbnails.py [--keep DIR] [--repeat 3] [--quick]. Ends with one JSON line. ``--quick``
is a smoke run (4 s clips at 640x360, one repeat): it proves the script runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vigil.formats.probe import probe
from workers.analysis.thumbnails import THUMBNAIL_MAX_SIDE, ThumbnailWriter
from workers.decode.frames import FrameRequest, open_media, plan_windows
from workers.testing.clips import write_clip_h264

SECONDS, FPS, SIZE = 20, 30, (1920, 1080)
QUICK_SECONDS, QUICK_SIZE = 4, (640, 360)
WINDOW_S, FRAMES, MODEL_SIDE = 10.0, 8, 224


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return min(times)


def clip(root: Path, gop: int, seconds: int = SECONDS, size: tuple[int, int] = SIZE) -> Path:
    path = root / f"h264_gop{gop}_{seconds}s_{size[0]}x{size[1]}.mp4"
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr)
        part = path.with_suffix(".part.mp4")
        write_clip_h264(part, seconds=seconds, fps=FPS, size=size, gop=gop, bframes=2).rename(path)
    return path


def measure(path: Path, out: Path, repeat: int) -> dict[str, float]:
    info = probe(path)
    with open_media(path, info=info) as media:
        windows = plan_windows(media.timed_info, window_s=WINDOW_S, frames_per_window=FRAMES)

    def analyse(full_side: int | None) -> None:
        requests = [
            FrameRequest(FRAMES, start_s=a, end_s=b, max_side=MODEL_SIDE, full_side=full_side)
            for a, b in windows
        ]
        with open_media(path, info=info) as media:
            for index, frames in media.frames(requests):
                if frames.full is not None:
                    ThumbnailWriter(out).write(f"w{index}.jpg", frames.full[len(frames.full) // 2])

    n = len(windows)
    sample_ms = best_ms(lambda: analyse(None), repeat) / n
    with_thumbs_ms = best_ms(lambda: analyse(THUMBNAIL_MAX_SIDE), repeat) / n
    return {"windows": n, "sample_ms": sample_ms, "thumbnail_ms": max(0.0, with_thumbs_ms - sample_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="cache the clips here (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 s at 640x360 (no figures)")
    args = parser.parse_args()
    seconds, size = (QUICK_SECONDS, QUICK_SIZE) if args.quick else (SECONDS, SIZE)
    if args.quick:
        args.repeat = 1
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        results = {}
        for gop in (250, 30):
            got = measure(clip(root, gop, seconds, size), Path(tmp) / "thumbs", args.repeat)
            ratio = got["thumbnail_ms"] / got["sample_ms"]
            results[f"gop{gop}"] = {**got, "thumbnail_over_sample": ratio}
            print(
                f"H.264 {size[1]}p gop {gop:>3}: model sample {got['sample_ms']:7.1f} ms/window, "
                f"thumbnail {got['thumbnail_ms']:7.1f} ms/window ({ratio:.2f}x the sample)"
            )
    head = {"bench": "thumbnails", "quick": args.quick, "size": list(size), "frames_per_window": FRAMES}
    print(json.dumps(head | results))


if __name__ == "__main__":
    main()
