"""The reference the frame tests compare with: every frame of a file decoded in order, without a seek (what a
player shows), and the keyframe-mode sample those tests take."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from workers.decode.frames import FrameRequest, open_media


class Reference:
    """Every frame of a file, decoded in order without a seek: timestamps, pixels, keyframe flags."""

    def __init__(self, path: Path) -> None:
        self.times: list[float] = []
        self.rgb: list[np.ndarray] = []
        self.keys: list[bool] = []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            origin = stream.start_time
            for frame in container.decode(stream):
                origin = frame.pts if origin is None else origin
                self.times.append(float((frame.pts - origin) * stream.time_base))
                self.rgb.append(frame.to_ndarray(format="rgb24"))
                self.keys.append(frame.key_frame)

    def shown_at(self, t: float) -> int:
        """Index of the frame a player shows from ``t`` on: the first whose timestamp reaches it."""
        return next((i for i, s in enumerate(self.times) if s >= t - 1e-6), len(self.times) - 1)

    def at(self, stamp: float) -> int:
        i = min(range(len(self.times)), key=lambda i: abs(self.times[i] - stamp))
        assert abs(self.times[i] - stamp) < 1e-6, f"no frame has timestamp {stamp}"
        return i


def keyframe_sample(path: Path, count: int) -> tuple[list[float], np.ndarray, int, int]:
    """``count`` keyframe-mode frames over the whole file: their times, pixels, decodes and drains."""
    with open_media(path) as media:
        frames = next(media.frames([FrameRequest(count, mode="keyframe")]))[1]
        assert media.redecoded == 0
        session = media._video
        assert session is not None
        return frames.timestamps_s, frames.rgb, session.decoded, session.drains


def assert_keyframes_as_decoded(path: Path, times: list[float], rgb: np.ndarray) -> None:
    """Each of ``times`` is a keyframe of ``path``, and ``rgb`` holds its pixels as a sequential decode
    shows them."""
    ref = Reference(path)
    for j, t in enumerate(times):
        i = ref.at(t)
        assert ref.keys[i], f"{t} s is not a keyframe"
        assert np.array_equal(rgb[j], ref.rgb[i]), f"pixels at {t} s"
