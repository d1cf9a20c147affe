"""The static-scene gate: a window whose picture did not change costs no model time.

A surveillance camera's clips are mostly an unchanged view. Before the model, each window's sampled
frames (already decoded at the model's size) are compared with those of the **last scored** window of the
same file; when no part of the picture moved by ``threshold`` grey levels or more, the window inherits that
window's scores per target (same P(yes), same matched decision, same evidence) marked ``inherited``.

The measure, chosen by measurement (``python bench/throughput_gate.py --measures``: a 10-minute 160x96
camera clip, sensor noise sigma 3, libx264, 30 s of a person-sized box walking through, frames at 112 px,
each window against the first): each frame is reduced to the mean grey level of the cells of a
``GRID``-wide grid, and the measure is the largest change of one cell between frames at the same position
in the two windows. Unchanged windows measured at most 3.1, windows with the box at least 49: a margin of
15.6x for the threshold to sit in. A global mean absolute difference dilutes a small object over the
whole picture (1.7 vs 2.4: 1.4x); 64-bit perceptual hashes did worse than the grid (dHash 3 vs 3 bits: no
margin; pHash 2 vs 10 bits: 5x). Averaging over cells cancels the sensor noise; the maximum keeps a local
change whole. One window's grid (8 frames) took 0.7 ms.

Why the last scored window and not the previous one: comparing with the previous window would let a slow
drift (a shadow, dusk) pass in steps each under the threshold while the scores, inherited down the chain,
describe a picture that has drifted far. Against the last scored window the accumulated change is what is
measured, so the chain re-scores as soon as the total reaches the threshold; inheriting from an inherited
window is therefore the same as inheriting from the window it inherited from.

The first window of a file is always scored. Windows whose frames are not comparable (another count or size
of frames) are scored. The trade-off: a change smaller than the threshold (a small or distant object, low
contrast) is missed for as long as the scene stays within it of the last scored window.

An inherited matched window gets its own thumbnail (the middle of its sampled frames at source resolution:
the scene is the scored one's, and the file shows this window's time) and the scored window's evidence
text (the scene it describes has not changed); neither costs a model run.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from vigil.ops.contracts import WindowResult
from workers.analysis.thumbnails import ThumbnailWriter
from workers.decode.frames import Frames

GRID = 16  # cells along the frame's long side: relative, so a threshold means the same at any model size


def signature(rgb: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames -> (T, rows, GRID) float32 mean grey level of each grid cell."""
    count, h, w = rgb.shape[:3]
    cell = max(h, w) / GRID
    size = (max(1, round(w / cell)), max(1, round(h / cell)))
    cells = np.empty((count, size[1], size[0]), np.float32)
    for i in range(count):
        grey = cv2.cvtColor(rgb[i], cv2.COLOR_RGB2GRAY).astype(np.float32)
        cells[i] = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return cells


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest change of one cell between frames at the same position (grey levels 0-255); infinite
    when the windows are not comparable (another number or size of frames)."""
    if a.shape != b.shape or a.size == 0:
        return float("inf")
    return float(np.abs(a - b).max())


class StaticGate:
    """One file's gate. It decides from frames alone, so a caller may score windows later or in batches:
    ``reference`` names the scored window a window inherits from, ``inherit`` copies that window's results.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._index: int | None = None  # the last window to be scored, and its signature
        self._signature: np.ndarray | None = None

    def reference(self, index: int, frames: Frames) -> int | None:
        """The index of the last scored window when window ``index`` shows the same scene (inherit it), else
        None: score this window, which becomes the one later windows are compared with. Always None when
        the gate is off and for the first window."""
        if self.threshold <= 0:
            return None
        cells = signature(frames.rgb)
        if self._signature is not None and difference(self._signature, cells) < self.threshold:
            return self._index
        self._index, self._signature = index, cells
        return None


def inherit(
    scored: list[WindowResult],
    frames: Frames,
    index: int,
    start_s: float,
    end_s: float,
    thumbnails: ThumbnailWriter,
) -> list[WindowResult]:
    """Window ``index``'s results, copied from the scored window's (``scored``) and marked inherited, with a
    thumbnail of its own middle frame when it matched (one file shared by its matched targets)."""
    results = [
        replace(r, window_index=index, start_s=start_s, end_s=end_s, thumbnail_path=None, inherited=True)
        for r in scored
    ]
    if any(r.matched for r in results):
        path = str(thumbnails.middle(f"w{index:04d}-inherited.jpg", frames))
        for result in results:
            result.thumbnail_path = path if result.matched else None
    return results
