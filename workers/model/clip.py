"""A whole clip (or image) as model input: N frames sampled uniformly, resized once to the model's side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.formats.probe import MediaInfo, probe
from workers.decode.frames import Mode, sample_frames
from workers.model.loading import LoadedModel


@dataclass(frozen=True)
class Clip:
    path: Path
    info: MediaInfo
    rgb: np.ndarray
    fps: float  # the sampled rate (``workers.decode.frames.sampled_fps``): 1 for an image, as the worker uses


def load_clip(loaded: LoadedModel, path: Path, *, frames: int, mode: Mode = "exact") -> Clip:
    info = probe(path)
    sampled = sample_frames(path, num_frames=frames, mode=mode, max_side=loaded.frame_side, info=info)
    return Clip(path, info, sampled.rgb, sampled.fps)
