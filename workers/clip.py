"""A whole clip (or image) as model input: N frames sampled uniformly, resized once to the model's side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.media import MediaInfo, probe
from workers.frames import sample_frames
from workers.models import LoadedModel


@dataclass(frozen=True)
class Clip:
    path: Path
    info: MediaInfo
    rgb: np.ndarray
    fps: float


def load_clip(loaded: LoadedModel, path: Path, *, frames: int, mode: str = "exact") -> Clip:
    info = probe(path)
    sampled = sample_frames(
        path,
        num_frames=frames,
        mode=mode,
        max_side=loaded.frame_side,
        info=info,  # type: ignore[arg-type]
    )
    span = max(info.duration_s, 1e-3)
    fps = max(len(sampled.indices) / span, 0.1) if info.kind == "video" else 1.0
    return Clip(path, info, sampled.rgb, fps)
