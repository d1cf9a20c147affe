"""sample_frames() against a sequential read of real clips, and its failure modes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vigil.errors import UnreadableMedia, UnsupportedMedia
from vigil.media import MediaInfo, probe
from workers.frames import Backend, Frames, choose_backend, plan_windows, sample_frames
from workers.testing.clips import (
    iter_frames,
    write_clip_h264,
    write_clip_mp4v,
    write_clip_mpeg4,
    write_corrupt,
    write_image,
)

SIZE = (160, 120)
GOP = 120


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "mp4v": write_clip_mp4v(d / "c.mp4", seconds=6, fps=30, size=SIZE),
        "h264": write_clip_h264(d / "h.mp4", seconds=8, fps=30, size=SIZE, gop=GOP, bframes=2),
        "mpeg4": write_clip_mpeg4(d / "m.mp4", seconds=6, fps=30, size=SIZE, gop=12),
    }


BACKENDS: list[Backend] = ["pyav", "opencv"]
CODECS = ["mp4v", "h264", "mpeg4"]


def sequential_rgb(path: Path, indices: list[int], backend: Backend = "opencv") -> dict[int, np.ndarray]:
    """The reference: read every frame from the start with ``backend``, keep the wanted ones."""
    if backend == "pyav":
        return sequential_rgb_av(path, indices)
    cap = cv2.VideoCapture(str(path))
    wanted, out = set(indices), {}
    for i in range(max(indices) + 1):
        ok, bgr = cap.read()
        assert ok, f"sequential read failed at {i}"
        if i in wanted:
            out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    cap.release()
    return out


def sequential_rgb_av(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """PyAV's reference: decode every frame in order (no seek), the n-th decoded frame is frame n."""
    wanted, out = set(indices), {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(indices):
                break
    assert set(out) == wanted, "sequential PyAV decode ended early"
    return out


def assert_exact(path: Path, frames: Frames, backend: Backend = "opencv") -> None:
    ref = sequential_rgb(path, frames.indices, backend)
    for k, i in enumerate(frames.indices):
        assert np.array_equal(frames.rgb[k], ref[i]), f"frame {i} differs from the sequential {backend} read"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("n", [8, 32])
def test_exact_mode_is_bit_identical_to_a_sequential_read(
    clips: dict[str, Path], codec: str, n: int, backend: Backend
) -> None:
    frames = sample_frames(clips[codec], num_frames=n, backend=backend)
    assert frames.rgb.shape == (n, SIZE[1], SIZE[0], 3) and frames.rgb.dtype == np.uint8
    assert len(set(frames.indices)) == n and frames.indices == sorted(frames.indices)
    assert frames.source_size == SIZE
    assert_exact(clips[codec], frames, backend)
    fps = probe(clips[codec]).fps
    assert frames.timestamps_s == pytest.approx([i / fps for i in frames.indices], abs=1e-3)


@pytest.mark.parametrize("codec", CODECS)
def test_backends_agree_on_indices_and_nearly_on_pixels(clips: dict[str, Path], codec: str) -> None:
    """Same frames from both decoders. Unresized, both convert YUV->RGB with the same swscale call
    (measured bit-identical, also at 1280x720); resized, swscale's area filter and OpenCV's INTER_AREA
    differ a little (measured at 720p -> 336: max 38, mean 0.74-0.81)."""
    a = sample_frames(clips[codec], num_frames=8, backend="pyav")
    b = sample_frames(clips[codec], num_frames=8, backend="opencv")
    assert a.indices == b.indices
    assert np.array_equal(a.rgb, b.rgb)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("codec", CODECS)
def test_window_sampling_stays_in_the_window(clips: dict[str, Path], codec: str, backend: Backend) -> None:
    frames = sample_frames(clips[codec], num_frames=8, start_s=2.5, end_s=4.0, backend=backend)
    assert all(75 <= i < 120 for i in frames.indices)
    assert len(set(frames.indices)) == 8
    assert_exact(clips[codec], frames, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keyframe_mode_is_close_and_cheaper(clips: dict[str, Path], backend: Backend) -> None:
    path = clips["h264"]
    exact = sample_frames(path, num_frames=4, backend=backend)
    fast = sample_frames(path, num_frames=4, mode="keyframe", backend=backend)
    assert len(fast.indices) == 4 and fast.indices != exact.indices
    assert all(abs(f - e) <= GOP for f, e in zip(fast.indices, exact.indices, strict=True))
    assert fast.decoded < exact.decoded / 2
    assert_exact(path, fast, backend)  # whatever frame it lands on, it reports that frame truthfully


def test_pyav_keyframe_mode_takes_distinct_keyframes(clips: dict[str, Path]) -> None:
    """The 8 s H.264 clip has keyframes 0, 120 (GOP): two targets far from both get one each."""
    frames = sample_frames(clips["h264"], num_frames=2, mode="keyframe", backend="pyav")
    assert frames.indices == [0, 120]
    assert frames.decoded <= 2 * (1 + 4)  # a seek and one decode each
    assert_exact(clips["h264"], frames, "pyav")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("codec", ["mp4v", "mpeg4"])
def test_keyframe_mode_on_short_gop_is_exact(clips: dict[str, Path], codec: str, backend: Backend) -> None:
    exact = sample_frames(clips[codec], num_frames=8, backend=backend)
    fast = sample_frames(clips[codec], num_frames=8, mode="keyframe", backend=backend)
    assert fast.indices == exact.indices


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_sampling(clips: dict[str, Path], backend: Backend) -> None:
    frames = sample_frames(clips["mp4v"], fps=2.0, start_s=1.0, end_s=3.0, backend=backend)
    assert frames.indices == [30, 45, 60, 75]
    assert_exact(clips["mp4v"], frames, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resize_bounds_the_longest_side(clips: dict[str, Path], backend: Backend) -> None:
    frames = sample_frames(clips["h264"], num_frames=4, max_side=64, backend=backend)
    assert frames.rgb.shape == (4, 48, 64, 3)
    assert frames.source_size == SIZE


def test_resized_frames_agree_across_backends(clips: dict[str, Path]) -> None:
    a = sample_frames(clips["mpeg4"], num_frames=4, max_side=64, backend="pyav")
    b = sample_frames(clips["mpeg4"], num_frames=4, max_side=64, backend="opencv")
    assert a.indices == b.indices
    diff = np.abs(a.rgb.astype(np.int16) - b.rgb.astype(np.int16))
    assert 0 < diff.mean() < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_4k_clip_with_max_side(tmp_path: Path, backend: Backend) -> None:
    clip = write_clip_mp4v(tmp_path / "uhd.mp4", seconds=0.4, fps=10, size=(3840, 2160))
    frames = sample_frames(clip, num_frames=4, max_side=336, backend=backend)
    assert frames.rgb.shape == (4, 189, 336, 3)
    assert frames.source_size == (3840, 2160)


def test_backend_choice() -> None:
    video = MediaInfo(kind="video", width=8, height=8, fps=10, frame_count=10, duration_s=1.0, codec=None)
    image = MediaInfo(kind="image", width=8, height=8, fps=0, frame_count=1, duration_s=0, codec=None)
    assert choose_backend(video) == "pyav"  # av is installed here
    assert choose_backend(video, prefer="opencv") == "opencv"
    assert choose_backend(image, prefer="pyav") == "opencv"


def test_variable_frame_rate_falls_back_to_counting_frames(tmp_path: Path) -> None:
    """Irregular timestamps: the n-th decoded frame is frame n, as a sequential read counts."""
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        pts = 0
        for i, bgr in enumerate(iter_frames(60, SIZE)):
            frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
            frame.pts, frame.time_base = pts, Fraction(1, 30)
            pts += 1 if i % 3 else 2  # every third frame arrives late
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    info = MediaInfo(kind="video", width=SIZE[0], height=SIZE[1], fps=30, frame_count=60, duration_s=2.0,
                     codec=None)
    frames = sample_frames(path, num_frames=6, info=info, backend="pyav")
    assert frames.indices == [5, 15, 25, 35, 45, 55]
    assert_exact(path, frames, "pyav")


def test_image_is_one_frame(tmp_path: Path) -> None:
    frames = sample_frames(write_image(tmp_path / "i.png", size=(400, 100)), num_frames=8, max_side=200)
    assert frames.rgb.shape == (1, 50, 200, 3)
    assert (frames.indices, frames.timestamps_s, frames.source_size) == ([0], [0.0], (400, 100))


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_clip_repeats_its_frame(tmp_path: Path, backend: Backend) -> None:
    clip = write_clip_mp4v(tmp_path / "one.mp4", seconds=1 / 30, fps=30, size=SIZE)
    frames = sample_frames(clip, num_frames=4, backend=backend)
    assert frames.indices == [0, 0, 0, 0]
    assert all(np.array_equal(frames.rgb[0], f) for f in frames.rgb)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frame_count_lie_returns_the_frames_that_exist(tmp_path: Path, backend: Backend) -> None:
    clip = write_clip_mp4v(tmp_path / "c.mp4", seconds=2, fps=15, size=SIZE)
    info = probe(clip)
    liar = MediaInfo(
        kind="video",
        width=info.width,
        height=info.height,
        fps=info.fps,
        frame_count=info.frame_count * 3,
        duration_s=info.duration_s * 3,
        codec=info.codec,
    )
    frames = sample_frames(clip, num_frames=6, info=liar, backend=backend)
    assert len(frames.indices) > 0 and max(frames.indices) < info.frame_count
    assert_exact(clip, frames, backend)


@pytest.mark.parametrize("kind", ["zero_bytes", "text", "truncated", "header_only"])
def test_broken_files_are_unreadable(tmp_path: Path, kind: str) -> None:
    with pytest.raises(UnreadableMedia):
        sample_frames(write_corrupt(tmp_path / "bad.mp4", kind), num_frames=8)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["zero_bytes", "text", "truncated", "header_only"])
def test_broken_files_fail_clearly_in_pyav_too(tmp_path: Path, kind: str) -> None:
    """Past the probe (given a plausible MediaInfo), FFmpeg's errors become UnreadableMedia."""
    info = MediaInfo(kind="video", width=160, height=120, fps=15, frame_count=30, duration_s=2.0, codec=None)
    bad = write_corrupt(tmp_path / "bad.mp4", kind)  # type: ignore[arg-type]
    with pytest.raises(UnreadableMedia) as caught:
        sample_frames(bad, num_frames=8, info=info, backend="pyav")
    assert caught.value.__cause__ is None or isinstance(caught.value.__cause__, av.error.FFmpegError)


def test_pyav_cut_recording_returns_what_decodes(tmp_path: Path) -> None:
    """An MP4 whose index is at the front (faststart) cut in half: the index promises 120 frames, about 60
    are there; the frames are spread over those that decode (a second pass, like the OpenCV scan)."""
    whole = write_clip_mpeg4(tmp_path / "w.mp4", seconds=4, fps=30, size=SIZE, faststart=True)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    frames = sample_frames(cut, num_frames=8, info=probe(whole), backend="pyav")
    assert len(set(frames.indices)) == 8 and max(frames.indices) < 90
    assert_exact(cut, frames, "pyav")


def test_wrong_extension_is_unsupported(tmp_path: Path) -> None:
    path = write_clip_mp4v(tmp_path / "c.mp4", seconds=0.2, fps=10, size=SIZE).rename(tmp_path / "c.dat")
    with pytest.raises(UnsupportedMedia):
        sample_frames(path, num_frames=2)


def test_huge_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    assert cv2.imwrite(str(path), np.zeros((100, 20000, 3), np.uint8))
    with pytest.raises(UnreadableMedia, match="resolution too large"):
        sample_frames(path, num_frames=1)


def test_bad_arguments() -> None:
    info = MediaInfo(kind="video", width=8, height=8, fps=10, frame_count=10, duration_s=1.0, codec=None)
    with pytest.raises(ValueError):
        sample_frames("x.mp4", info=info)
    with pytest.raises(ValueError):
        sample_frames("x.mp4", num_frames=2, fps=1.0, info=info)


def _video(duration: float, fps: float = 30.0) -> MediaInfo:
    return MediaInfo(
        kind="video",
        width=8,
        height=8,
        fps=fps,
        frame_count=round(duration * fps),
        duration_s=duration,
        codec=None,
    )


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
