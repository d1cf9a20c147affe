"""The one list of media file types Vigil knows: what the watcher includes by default, what `probe` opens,
what a reference image may be. Torch- and OpenCV-free, so settings can use it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

MediaKind = Literal["video", "image"]

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".m4v", ".webm", ".ts", ".mts", ".3gp", ".flv", ".wmv", ".mpg", ".mpeg"}
)
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MEDIA_EXTENSIONS: frozenset[str] = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


def media_kind(path: str | os.PathLike[str]) -> MediaKind | None:
    """``"video"`` or ``"image"`` by the file's suffix (case-insensitive), else ``None``."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None


def window_span(start_s: float, end_s: float, kind: str | None = None) -> str:
    """Where a window of a file is, as people read it: "3.0–13.0 s"; a single instant "at 3.0 s" (not
    "3.0–3.0 s"); the one window of an image is the image, which has no time ("0.0–0.0 s" said nothing)."""
    if kind == "image":
        return "the image"
    if start_s == end_s:
        return f"at {start_s:.1f} s"
    return f"{start_s:.1f}–{end_s:.1f} s"
