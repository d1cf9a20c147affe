"""The light stream probe (``workers.decode.session.LIGHT_PROBE``): MP4/MOV files are opened without the
probe's decoding, and nothing Vigil reads from the stream changes; other containers keep FFmpeg's full probe.

The full probe is the reference: the same file opened with ``av.open``'s defaults, as every player does.
"""

from __future__ import annotations

from contextlib import closing
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import workers.decode.session as decode_av
from workers.decode.frames import sample_frames
from workers.decode.session import VideoSession, open_container
from workers.testing.clips import write_camera_clip
from workers.testing.recordings import real_sample_clips

SIZE = (160, 96)
MP4_FAMILY = {
    "x264-b-pyramid": lambda p: write_camera_clip(p / "a.mp4", size=SIZE, seconds=6, fps=25, gop_s=2),
    # no B-frames: the full probe decodes 7 pictures to learn that nothing is reordered
    "x264-no-b-frames": lambda p: write_camera_clip(p / "b.mp4", size=SIZE, seconds=6, bframes=0),
    "x265": lambda p: write_camera_clip(p / "c.mp4", codec="libx265", size=SIZE, seconds=4, fps=30),
    "x264-fragmented": lambda p: write_camera_clip(p / "d.mp4", muxer="fmp4", size=SIZE, seconds=6),
    "x264-start-3.7s": lambda p: write_camera_clip(p / "e.mp4", size=SIZE, seconds=4, start_s=3.7),
    "x264-vfr-30000/1001": lambda p: write_camera_clip(
        p / "f.mov", size=SIZE, fps=Fraction(30000, 1001), times_s=[0.0, 0.05, 0.3, 0.31, 0.9, 1.0, 2.2, 2.25]
    ),
    "x264-after-an-aac-track": lambda p: _audio_then_video(p / "g.mp4"),
    **{f"real-{name}": lambda _p, path=path: path for name, path in real_sample_clips().items()},
}
OTHER_CONTAINERS = {
    "matroska": lambda p: write_camera_clip(p / "a.mkv", muxer="matroska", size=SIZE, seconds=4),
    "mpegts": lambda p: write_camera_clip(p / "b.ts", muxer="mpegts", size=SIZE, seconds=4),
    "avi": lambda p: write_camera_clip(p / "c.avi", codec="mjpeg", muxer="avi", size=SIZE, seconds=2),
}


def _audio_then_video(path: Path) -> Path:
    """A camera's MP4 with its AAC track first: the probe options reach every stream, and Vigil reads the
    video one wherever it is."""
    with av.open(str(path), "w") as container:
        audio = container.add_stream("aac", rate=16000)
        video = container.add_stream("libx264", rate=25, options={"bf": "2"})
        video.width, video.height, video.pix_fmt = SIZE[0], SIZE[1], "yuv420p"  # type: ignore[union-attr]
        for i in range(50):
            picture = np.full((SIZE[1], SIZE[0], 3), i * 5, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(video.encode(frame))
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 640), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 16000, i * 640
            container.mux(audio.encode(sound))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def _full_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_av, "LIGHT_PROBE_FORMAT", "no container")


def _timeline(path: Path) -> tuple[object, ...]:
    with closing(VideoSession(path, fallback_duration_s=0.0)) as video:
        ctx = video.stream.codec_context
        keys = [(round(k.t, 9), k.pos) for k in video.keyframes]
        rate = (video.stream.average_rate, video.stream.guessed_rate, video.stream.time_base)
        return video.origin, video.duration_s, keys, video.seekable, video.size, ctx.has_b_frames, rate


@pytest.mark.parametrize("name", list(MP4_FAMILY))
def test_mp4_opens_without_decoding_and_reads_the_same(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = MP4_FAMILY[name](tmp_path)
    with open_container(path) as container:
        stream = container.streams.video[0]
        assert container.format.name == decode_av.LIGHT_PROBE_FORMAT
        if stream.codec_context.name == "h264":  # HEVC's parser reads the pixel format: no decode either way
            assert stream.codec_context.pix_fmt is None, "the probe decoded a picture"
    light = _timeline(path)
    light_frames = sample_frames(path, num_frames=6)
    _full_probe(monkeypatch)
    with open_container(path) as container:
        assert container.streams.video[0].codec_context.pix_fmt is not None
    assert light == _timeline(path)
    full_frames = sample_frames(path, num_frames=6)
    assert light_frames.timestamps_s == full_frames.timestamps_s
    assert np.array_equal(light_frames.rgb, full_frames.rgb)


@pytest.mark.parametrize("name", list(OTHER_CONTAINERS))
def test_other_containers_keep_the_full_probe(name: str, tmp_path: Path) -> None:
    path = OTHER_CONTAINERS[name](tmp_path)
    with open_container(path) as container, av.open(str(path)) as reference:
        assert container.format.name != decode_av.LIGHT_PROBE_FORMAT
        ctx, ref = container.streams.video[0].codec_context, reference.streams.video[0].codec_context
        assert ctx.pix_fmt == ref.pix_fmt is not None
        assert ctx.has_b_frames == ref.has_b_frames
        assert len(container.streams.video[0].index_entries) == len(reference.streams.video[0].index_entries)
