"""probe() on real files of every kind, healthy and broken."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vigil.config.settings import SourceSettings
from vigil.errors import UnreadableMedia, UnsupportedMedia
from vigil.formats.probe import probe
from vigil.formats.types import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, media_kind
from watcher.paths import SourceRules
from workers.testing.clips import write_clip_mp4v, write_corrupt, write_image


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.mp4", "video"),
        ("B.MKV", "video"),
        ("c.jpeg", "image"),
        ("d.PNG", "image"),
        ("e.txt", None),
        ("noext", None),
        ("f.mp4.part", None),
    ],
)
def test_media_kind_by_suffix(name: str, kind: str | None) -> None:
    assert media_kind(name) == kind


def test_extension_sets_are_lowercase_and_disjoint() -> None:
    assert all(e == e.lower() and e.startswith(".") for e in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)
    assert not VIDEO_EXTENSIONS & IMAGE_EXTENSIONS


def test_the_watcher_includes_by_default_every_type_probe_opens(tmp_path: Path) -> None:
    """One list: a file type probe() opens is one the watcher picks up (.flv, .wmv, .tif disagreed once)."""
    rules = SourceRules.of(SourceSettings(name="cam", path=tmp_path))
    for ext in sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS):
        assert rules.wants(tmp_path / f"clip{ext.upper()}"), ext
    assert not rules.wants(tmp_path / "notes.txt")


def test_probe_mp4v_clip(tmp_path: Path) -> None:
    clip = write_clip_mp4v(tmp_path / "c.mp4", seconds=2, fps=15, size=(160, 120))
    info = probe(clip)
    assert (info.kind, info.width, info.height, info.fps, info.frame_count) == ("video", 160, 120, 15.0, 30)
    assert info.duration_s == pytest.approx(2.0)
    assert info.codec


def test_probe_image(tmp_path: Path) -> None:
    info = probe(write_image(tmp_path / "i.jpg", size=(64, 48)))
    assert (info.kind, info.width, info.height, info.frame_count, info.fps, info.duration_s) == (
        "image",
        64,
        48,
        1,
        0.0,
        0.0,
    )


UNOPENABLE = "not a readable video container|no decodable frame"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("zero_bytes", "empty file"),
        ("text", UNOPENABLE),
        ("truncated", UNOPENABLE),
        ("header_only", UNOPENABLE),
    ],
)
def test_probe_refuses_broken_videos(tmp_path: Path, kind: str, reason: str) -> None:
    path = write_corrupt(tmp_path / "bad.mp4", kind)  # type: ignore[arg-type]
    with pytest.raises(UnreadableMedia, match=reason) as err:
        probe(path)
    assert err.value.path == str(path)


def test_probe_refuses_text_named_as_image(tmp_path: Path) -> None:
    path = write_corrupt(tmp_path / "bad.jpg", "text")
    with pytest.raises(UnreadableMedia):
        probe(path)


def test_probe_refuses_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedMedia):
        probe(path)


def test_probe_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableMedia, match="cannot stat"):
        probe(tmp_path / "gone.mp4")


def test_probe_refuses_absurd_resolution(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    assert cv2.imwrite(str(path), np.zeros((100, 20000, 3), np.uint8))
    with pytest.raises(UnreadableMedia, match="resolution too large"):
        probe(path)


def test_probe_one_frame_clip(tmp_path: Path) -> None:
    info = probe(write_clip_mp4v(tmp_path / "one.mp4", seconds=1 / 30, fps=30, size=(160, 120)))
    assert info.frame_count == 1
