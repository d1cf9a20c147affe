"""Thumbnails at source resolution from real H.264 files: size, content, permissions, absolute paths."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from vigil.config.settings import ModelSettings
from vigil.formats.probe import probe
from vigil.ops.contracts import TargetSpec
from workers.analysis.thumbnails import THUMBNAIL_MAX_SIDE, ThumbnailWriter, write_jpeg
from workers.decode.frames import FrameRequest, open_media
from workers.testing.clips import iter_frames, write_clip_h264, write_image

FPS = 10


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def full_frame_at(path: Path, t: float) -> np.ndarray:
    """The frame shown at ``t`` as the decode pass delivers thumbnail candidates (source size, capped)."""
    request = FrameRequest(1, start_s=t - 0.05, end_s=t + 0.05, max_side=32, full_side=THUMBNAIL_MAX_SIDE)
    with open_media(path) as media:
        frames = next(media.frames([request]))[1]
    assert frames.full is not None
    return frames.full[0]


def colour_distance(jpeg: np.ndarray, frame_index: int) -> float:
    """Mean absolute difference between a written thumbnail (BGR) and the clip writer's frame."""
    h, w = jpeg.shape[:2]
    expected = list(iter_frames(frame_index + 1, (w, h)))[frame_index]
    return float(np.abs(jpeg.astype(int) - expected.astype(int)).mean())


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1920, 1080), (1280, 720)), ((640, 360), (640, 360)), ((1080, 1920), (720, 1280))],
)
def test_a_thumbnail_is_the_source_frame_capped_at_1280(
    tmp_path: Path, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    clip = write_clip_h264(tmp_path / "c.mp4", seconds=2, fps=FPS, size=size, gop=FPS * 2, bframes=2)
    writer = ThumbnailWriter(tmp_path / "thumbs")
    with umask(0o022):
        out = writer.write("w0000-t1.jpg", full_frame_at(clip, 13 / FPS))
    bgr = cv2.imread(str(out))
    assert (bgr.shape[1], bgr.shape[0]) == expected and max(expected) <= THUMBNAIL_MAX_SIDE
    # it is frame 13 (each frame has its own colour and bar), not a neighbour
    assert colour_distance(bgr, 13) < 8 < min(colour_distance(bgr, 12), colour_distance(bgr, 14))
    assert mode_of(out) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == ["w0000-t1.jpg"]  # no temporary left


def test_files_follow_the_process_umask(tmp_path: Path) -> None:
    rgb = np.zeros((90, 160, 3), np.uint8)
    with umask(0o002):
        group = write_jpeg(rgb, tmp_path / "a.jpg")
    with umask(0o077):
        private = write_jpeg(rgb, tmp_path / "b.jpg")
    assert (mode_of(group), mode_of(private)) == (0o664, 0o600)


def test_the_path_is_absolute_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    image = write_image(tmp_path / "still.jpg", size=(2000, 1000))
    out = ThumbnailWriter(Path("vigil-data/thumbnails/7")).write("w.jpg", full_frame_at(image, 0.0))
    assert out.is_absolute() and out == tmp_path / "vigil-data" / "thumbnails" / "7" / "w.jpg"
    assert cv2.imread(str(out)).shape[:2] == (640, 1280)


def test_write_jpeg_shrinks_and_keeps_colours(tmp_path: Path) -> None:
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[..., 0] = 255  # red in RGB
    bgr = cv2.imread(str(write_jpeg(rgb, tmp_path / "t.jpg", max_side=320)))
    assert bgr.shape == (240, 320, 3) and bgr[..., 2].mean() > 200 and bgr[..., 0].mean() < 50


def test_write_jpeg_creates_its_folder_and_reports_os_errors(tmp_path: Path) -> None:
    made = write_jpeg(np.zeros((8, 8, 3), np.uint8), tmp_path / "new" / "dir" / "t.jpg")
    assert made.is_file() and made.read_bytes()[:2] == b"\xff\xd8"
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OSError, match="cannot write thumbnail"):
        write_jpeg(np.zeros((8, 8, 3), np.uint8), tmp_path / "a-file" / "t.jpg")


def test_the_recogniser_stores_full_resolution_thumbnails(
    tmp_path: Path, loaded_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model sees small frames; the detection's thumbnail is the best frame of its window at 1280 px
    (``every_match``: every matched window gets the best-frame search)."""
    from workers.analysis.pipeline import WindowRecognizer

    monkeypatch.chdir(tmp_path)
    clip = write_clip_h264(tmp_path / "c.mp4", seconds=2, fps=FPS, size=(1920, 1080), gop=FPS, bframes=2)
    loaded = loaded_models("llava_next_video")
    model = ModelSettings(
        id="tiny", frames_per_window=4, window_s=1.0, evidence=False, evidence_windows="every_match"
    )
    recognizer = WindowRecognizer(loaded, model, thumbnails_dir=Path("data/thumbnails"))
    target = TargetSpec(id=3, name="person", description="a person walking", threshold=0.0)
    with umask(0o022):
        got = recognizer.recognize(clip, probe(clip), [target], media_id=42)
    assert [r.window_index for r in got.results] == [0, 1]
    assert got.frames_decoded <= 2 * FPS  # thumbnails come from the one decode pass: no frame twice
    for result in got.results:
        path = Path(result.thumbnail_path or "")
        assert path == tmp_path / "data" / "thumbnails" / "42" / f"w{result.window_index:04d}-t3.jpg"
        bgr = cv2.imread(str(path))
        assert bgr.shape == (720, 1280, 3) and mode_of(path) == 0o644
        # the best frame is one of the window's own frames (0-9 for window 0, 10-19 for window 1)
        window = range(result.window_index * FPS, (result.window_index + 1) * FPS)
        nearest = min(range(2 * FPS), key=lambda i: colour_distance(bgr, i))
        assert nearest in window and colour_distance(bgr, nearest) < 8
