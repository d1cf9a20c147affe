"""What a source-resolution thumbnail costs: re-reading one frame per matched window at 1080p, against the
window's own sampling for the model (8 frames at 224 px) measured in the same run.

Writes (once, cached by parameters) a 20 s 1920x1080 30 fps H.264 clip twice: a keyframe every 250 frames
(camera-like, B-frames) and every 30. For each 10 s window: the model's sample (``sample_frames``, 8 frames,
max side 224), then ``ThumbnailWriter.write`` of the window's middle frame (the frame furthest from a
keyframe is the expensive case), best of ``--repeat``. The ratio says how much a matched window's decode
grows; unmatched windows pay nothing.

Usage: python bench/thumbnails.py [--keep DIR] [--repeat 3]. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vigil.media import probe
from workers.frames import plan_windows, sample_frames
from workers.testing.clips import write_clip_h264
from workers.thumbnails import ThumbnailWriter

SECONDS, FPS, SIZE = 20, 30, (1920, 1080)
WINDOW_S, FRAMES, MODEL_SIDE = 10.0, 8, 224


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return min(times)


def clip(root: Path, gop: int) -> Path:
    path = root / f"h264_gop{gop}_{SECONDS}s_{SIZE[0]}x{SIZE[1]}.mp4"
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr)
        part = path.with_suffix(".part.mp4")
        write_clip_h264(part, seconds=SECONDS, fps=FPS, size=SIZE, gop=gop, bframes=2).rename(path)
    return path


def measure(path: Path, out: Path, repeat: int) -> dict[str, float]:
    info = probe(path)
    windows = plan_windows(info, window_s=WINDOW_S, frames_per_window=FRAMES)
    sample_ms = thumb_ms = 0.0
    for index, (start, end) in enumerate(windows):
        sample_ms += best_ms(
            lambda s=start, e=end: sample_frames(
                path, num_frames=FRAMES, start_s=s, end_s=e, max_side=MODEL_SIDE, info=info
            ),
            repeat,
        )
        middle = round((start + end) / 2 * info.fps)
        # a fresh writer each time: its one-frame cache must not hide the decode
        thumb_ms += best_ms(
            lambda i=index, m=middle: ThumbnailWriter(path, info, out).write(f"w{i}.jpg", frame_index=m),
            repeat,
        )
    n = len(windows)
    return {"windows": n, "sample_ms": sample_ms / n, "thumbnail_ms": thumb_ms / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="cache the clips here (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        results = {}
        for gop in (250, 30):
            got = measure(clip(root, gop), Path(tmp) / "thumbs", args.repeat)
            ratio = got["thumbnail_ms"] / got["sample_ms"]
            results[f"gop{gop}"] = {**got, "thumbnail_over_sample": ratio}
            print(
                f"H.264 1080p gop {gop:>3}: model sample {got['sample_ms']:7.1f} ms/window, "
                f"thumbnail {got['thumbnail_ms']:7.1f} ms/window ({ratio:.2f}x the sample)"
            )
    print(json.dumps({"bench": "thumbnails", "size": list(SIZE), "frames_per_window": FRAMES, **results}))


if __name__ == "__main__":
    main()
