"""The keyframe pass (``keyframe`` mode) on real encoders' output: how it decodes each kind of keyframe,
and that it returns exactly the frames a sequential decode shows at those keyframes.

Single-slice IDR keyframes (the real recordings, most camera encoders) are read a batch at a time, with
demuxer seeks between them, and fed back to back to frame threads: a seek flushes the decoder, so a
keyframe fed before a seek and not drained would be lost. Multi-slice IDR keyframes and open-GOP keyframes
(HEVC's CRA pictures) are decoded one at a time, the decoder drained after each.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from tests.support.decoding import assert_keyframes_as_decoded, keyframe_sample
from workers.decode.frames import FrameRequest, open_media
from workers.decode.h264_nal import idr_slices
from workers.decode.keyframe_pass import BATCH_PACKETS
from workers.decode.session import VideoSession
from workers.testing.clips import write_camera_clip
from workers.testing.recordings import concat_stream_copy, real_sample_clips


def keyframe_slices(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [idr_slices(memoryview(p), 4) for p in container.demux(stream) if p.size and p.is_keyframe]


@pytest.fixture(scope="module")
def single_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 single-slice IDR keyframes 2 s apart: every step between two of them is a demuxer seek."""
    folder = tmp_path_factory.mktemp("single-slice")
    part = write_camera_clip(folder / "part.mp4", seconds=10, fps=25, gop_s=2, cut_s=0, slices=1)
    return concat_stream_copy([part] * 4, folder / "joined.mp4", gap_s=0.04)


def test_single_slice_idr_keyframes_are_fed_back_to_back_across_seeks(single_slice: Path) -> None:
    assert set(keyframe_slices(single_slice)) == {1}
    times, rgb, decoded, drains = keyframe_sample(single_slice, 2 * BATCH_PACKETS)
    assert len(set(times)) == decoded == 2 * BATCH_PACKETS  # distinct keyframes, each decoded once
    assert drains == 2  # one drain a batch, not one a keyframe
    assert_keyframes_as_decoded(single_slice, times, rgb)


def test_real_footage_keyframes_are_fed_back_to_back() -> None:
    real = real_sample_clips()["bikes"]
    assert set(keyframe_slices(real)) == {1}
    times, rgb, decoded, drains = keyframe_sample(real, 6)
    assert decoded == len(set(times)) and drains == 1
    assert_keyframes_as_decoded(real, times, rgb)


def test_multi_slice_keyframes_are_decoded_one_at_a_time(tmp_path: Path) -> None:
    clip = write_camera_clip(tmp_path / "slices.mp4", seconds=12, fps=25, gop_s=2, cut_s=0, slices=3)
    assert set(keyframe_slices(clip)) == {3}
    times, rgb, decoded, drains = keyframe_sample(clip, 5)
    assert decoded == drains == len(set(times)) == 5
    assert_keyframes_as_decoded(clip, times, rgb)


def test_open_gop_hevc_keyframes_are_decoded_one_at_a_time(tmp_path: Path) -> None:
    """x265 writes CRA keyframes (open GOP): they carry on the picture order of what came before."""
    clip = write_camera_clip(tmp_path / "hevc.mp4", codec="libx265", seconds=8, fps=25, gop_s=1, cut_s=0)
    times, rgb, decoded, drains = keyframe_sample(clip, 6)
    assert decoded == drains == len(set(times)) == 6
    assert_keyframes_as_decoded(clip, times, rgb)


def test_matroska_keyframes_are_reached_by_seeks_after_the_scan(tmp_path: Path) -> None:
    """Matroska has no full index: the session scans its packets once, then seeks to each keyframe it
    wants instead of reading every packet again."""
    clip = write_camera_clip(tmp_path / "a.mkv", muxer="matroska", seconds=40, fps=15, gop_s=10, cut_s=0)
    read = 0
    real_next_packet = VideoSession.next_packet

    def counting(session: VideoSession) -> av.Packet | None:
        nonlocal read
        read += 1
        return real_next_packet(session)

    with open_media(clip) as media:
        session = media._video
        assert session is not None and session.seekable and len(session.keyframes) == 4
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(VideoSession, "next_packet", counting)
            frames = next(media.frames([FrameRequest(4, mode="keyframe")]))[1]
    assert frames.timestamps_s == [0.0, 10.0, 20.0, 30.0]
    assert read <= 2 * 4  # a keyframe's packet each (600 packets when read on)
    assert_keyframes_as_decoded(clip, frames.timestamps_s, frames.rgb)
