"""Camera-like scenes for ``workers.testing.clips.write_camera_clip(frame=...)``: a fixed view that mostly
does not change, as a surveillance camera sees it, for testing and measuring the static-scene gate.

Real sensors are never bit-identical frame to frame, so every frame carries fresh sensor noise: a gate
that only skipped identical frames would never skip anything on a real camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class StaticScene:
    """A still textured view with Gaussian sensor noise of ``noise`` grey levels (per pixel, per frame) and,
    between ``active_s[0]`` and ``active_s[1]``, a box the size of a person crossing it (``box`` 1: a tenth
    of the width by a third of the height, a person near the camera; 0.25: a quarter of that each way, a
    person farther off)."""

    active_s: tuple[float, float] = (0.0, 0.0)
    noise: float = 3.0
    seed: int = 0
    box: float = 1.0
    _background: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)

    def background(self, size: tuple[int, int]) -> np.ndarray:
        if size not in self._background:
            w, h = size
            rng = np.random.default_rng(self.seed)
            coarse = rng.integers(40, 200, size=(max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
            self._background[size] = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
        return self._background[size]

    def active(self, t: float) -> bool:
        return self.active_s[0] <= t < self.active_s[1]

    def __call__(self, index: int, t: float, size: tuple[int, int]) -> np.ndarray:
        w, h = size
        frame = self.background(size).astype(np.float32)
        if self.active(t):
            start, end = self.active_s
            box_w, box_h = max(3, int(w * self.box / 10)), max(6, int(h * self.box / 3))
            x = int((t - start) / (end - start) * (w - box_w))  # walks across once, left to right
            y = h - box_h - h // 10
            frame[y : y + box_h, x : x + box_w] = (40, 60, 170)
        if self.noise > 0:
            rng = np.random.default_rng((self.seed, index))
            frame += rng.normal(0.0, self.noise, size=frame.shape).astype(np.float32)
        return np.clip(frame, 0, 255).astype(np.uint8)
