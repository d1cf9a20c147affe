"""Damaged camera files: a keyframe overwritten with noise (a bad sector, a broken upload) and broken
files, in both sampling modes. Nothing stops the pass: what a player would show is returned, in time order,
and frames the damage does not reach are exactly a sequential decode's of the intact file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.support.decoding import assert_keyframes_as_decoded, keyframe_sample
from vigil.errors import UnreadableMedia
from vigil.formats.probe import MediaInfo
from workers.decode.frames import FrameRequest, open_media
from workers.testing.clips import write_camera_clip, write_corrupt


@pytest.fixture
def garbled(tmp_path: Path) -> tuple[Path, Path]:
    """(intact, damaged): 12 s, a one-slice IDR keyframe every 2 s; the damaged copy's keyframe at 4 s is
    noise. FFmpeg's parser no longer flags it as a keyframe, though the index still lists it, and PyAV's
    sequential decode of the damaged file stops there with an error."""
    clip = write_camera_clip(tmp_path / "a.mp4", seconds=12, fps=25, gop_s=2, cut_s=0, slices=1)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        keys = [(p.pos, p.size) for p in container.demux(stream) if p.size and p.is_keyframe]
    assert len(keys) == 6
    data = bytearray(clip.read_bytes())
    pos, size = keys[2]
    data[pos : pos + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    return clip, bad


def test_keyframe_mode_serves_a_garbled_keyframe_by_the_next(garbled: tuple[Path, Path]) -> None:
    clip, bad = garbled
    times, rgb, _, _ = keyframe_sample(bad, 6)
    assert times == [0.0, 2.0, 6.0, 6.0, 8.0, 10.0]
    assert_keyframes_as_decoded(clip, times, rgb)


def test_exact_mode_decodes_on_through_a_garbled_keyframe(garbled: tuple[Path, Path]) -> None:
    """The run for 5 s cannot start at the missing keyframe: it starts at the one before and decodes on,
    leaving the damaged packet out; every point gets the frame shown at its time."""
    clip, bad = garbled
    with open_media(bad) as media:
        frames = next(media.frames([FrameRequest(6)]))[1]
        session = media._video
        assert session is not None and session.damaged >= 1
    assert frames.timestamps_s == pytest.approx([1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
    with open_media(clip) as media:
        intact = next(media.frames([FrameRequest(6)]))[1]
    for j in (0, 1, 3, 4, 5):  # 5 s depends on the damaged picture: a player shows it concealed
        assert np.array_equal(frames.rgb[j], intact.rgb[j]), f"pixels at {frames.timestamps_s[j]} s"


@pytest.mark.parametrize("mode", ["exact", "keyframe"])
@pytest.mark.parametrize("kind", ["zero_bytes", "text", "truncated", "header_only"])
def test_broken_files_are_unreadable_in_both_modes(tmp_path: Path, kind: str, mode: str) -> None:
    info = MediaInfo(kind="video", width=160, height=120, fps=15, frame_count=30, duration_s=2.0, codec=None)
    bad = write_corrupt(tmp_path / "bad.mp4", kind)  # type: ignore[arg-type]
    with pytest.raises(UnreadableMedia), open_media(bad, info=info) as media:
        next(media.frames([FrameRequest(8, mode=mode)]))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["exact", "keyframe"])
def test_a_file_of_nothing_but_damaged_pictures_fails_in_one_line(tmp_path: Path, mode: str) -> None:
    """Every picture noise behind an intact index: no keyframe is left to start at, nothing is decoded,
    and the media fails in one line (a terminal state) instead of hanging or crashing the worker."""
    clip = write_camera_clip(tmp_path / "a.mp4", seconds=4, fps=25, gop_s=2, cut_s=0, slices=1)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        spans = [(p.pos, p.size) for p in container.demux(stream) if p.size]
    data = bytearray(clip.read_bytes())
    noise = np.random.default_rng(1)
    for pos, size in spans:
        data[pos : pos + size] = noise.integers(0, 256, size, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(UnreadableMedia, match="no decodable frame") as raised, open_media(bad) as media:
        next(media.frames([FrameRequest(4, mode=mode)]))  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)
