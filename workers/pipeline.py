"""The recogniser: windows of sampled frames in, per-target P(yes) per window out, with evidence and a
thumbnail of the best frame for the windows that matched (re-read at source resolution by
``workers/thumbnails.py``; the model's frames are too small to look at).

Costs are spent where they matter: every target of a window shares one encoding of its frames; evidence
generation and best-frame search run only for windows above a target's threshold.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.media import MediaInfo
from vigil.settings import ModelSettings
from workers.analyze import Recognition, TargetSpec, WindowResult
from workers.dialogue import describe
from workers.frames import Frames, plan_windows, sample_frames
from workers.models import LoadedModel
from workers.references import ReferenceImage
from workers.scoring import PROMPT_VERSION, generate_evidence, score_targets
from workers.thumbnails import ThumbnailWriter

log = logging.getLogger(__name__)


@dataclass
class _Timer:
    decode_ms: float = 0.0
    model_ms: float = 0.0
    frames: int = 0


class WindowRecognizer:
    """Implements workers.analyze.Recognizer over one loaded model."""

    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        loaded: LoadedModel,
        settings: ModelSettings,
        *,
        thumbnails_dir: Path,
        references_dir: Path | None = None,
    ) -> None:
        self.loaded = loaded
        self.settings = settings
        self.thumbnails_dir = thumbnails_dir
        self.references_dir = references_dir
        self.model_id = loaded.name

    def references(self, target: TargetSpec) -> list[ReferenceImage]:
        """The target's stored reference images (the file name is the content hash)."""
        if target.images and self.references_dir is None:
            raise ValueError(f"target {target.name} has reference images but no references folder is set")
        folder = self.references_dir or Path()
        return [ReferenceImage(Path(name).stem, folder / name) for name in target.images]

    def recognize(
        self,
        path: Path,
        info: MediaInfo,
        targets: list[TargetSpec],
        *,
        media_id: int,
        frames_per_window: int | None = None,
    ) -> Recognition:
        per_window = frames_per_window or self.settings.frames_per_window
        windows = plan_windows(
            info,
            window_s=self.settings.window_s,
            frames_per_window=per_window,
            max_windows=self.settings.max_windows,
        )
        timer = _Timer()
        thumbnails = ThumbnailWriter(path, info, self.thumbnails_dir / str(media_id))
        results: list[WindowResult] = []
        for index, (start_s, end_s) in enumerate(windows):
            frames = self._sample(path, info, start_s, end_s, per_window, timer)
            results.extend(self._score_window(frames, targets, index, start_s, end_s, thumbnails, timer))
        caption = self._caption(path, info, per_window, timer) if self.settings.caption else None
        return Recognition(
            results=results,
            windows=len(windows),
            frames_decoded=timer.frames,
            decode_ms=timer.decode_ms,
            model_ms=timer.model_ms,
            params={
                "frames_per_window": per_window,
                "window_s": self.settings.window_s,
                "sampling": self.settings.sampling,
                "frame_side": self.loaded.frame_side,
            },
            caption=caption,
        )

    def _caption(self, path: Path, info: MediaInfo, n: int, timer: _Timer) -> str:
        """A few sentences about the whole clip, from frames spread over all of it."""
        frames = self._sample(path, info, 0.0, None, n, timer)
        began = time.perf_counter()
        text = describe(
            self.loaded,
            frames.rgb,
            fps=_sampled_fps(frames, 0.0, info.duration_s),
            max_new_tokens=self.settings.caption_max_tokens,
        )
        timer.model_ms += (time.perf_counter() - began) * 1000
        return text

    def _sample(
        self, path: Path, info: MediaInfo, start_s: float, end_s: float | None, n: int, timer: _Timer
    ) -> Frames:
        began = time.perf_counter()
        frames = sample_frames(
            path,
            num_frames=n,
            start_s=start_s,
            end_s=end_s,
            mode=self.settings.sampling,
            max_side=self.loaded.frame_side,
            info=info,
        )
        timer.decode_ms += (time.perf_counter() - began) * 1000
        timer.frames += len(frames.indices)
        return frames

    def _score_window(
        self,
        frames: Frames,
        targets: list[TargetSpec],
        index: int,
        start_s: float,
        end_s: float,
        thumbnails: ThumbnailWriter,
        timer: _Timer,
    ) -> list[WindowResult]:
        if not targets:
            return []
        fps = _sampled_fps(frames, start_s, end_s)
        began = time.perf_counter()
        scores = score_targets(
            self.loaded,
            frames.rgb,
            fps=fps,
            descriptions=[t.description for t in targets],
            references=[self.references(t) for t in targets],
        )
        results = [
            WindowResult(t.id, index, start_s, end_s, float(p), matched=bool(p >= t.threshold))
            for t, p in zip(targets, scores, strict=True)
        ]
        matched = [(t, r) for t, r in zip(targets, results, strict=True) if r.matched]
        best = self._best_frames(frames, [t for t, _ in matched]) if matched else []
        if self.settings.evidence:
            for target, result in matched:
                result.evidence = generate_evidence(
                    self.loaded,
                    frames.rgb,
                    fps=fps,
                    description=target.description,
                    references=self.references(target),
                    max_new_tokens=self.settings.evidence_max_tokens,
                ).strip()
        timer.model_ms += (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        for (target, result), frame_index in zip(matched, best, strict=True):
            name = f"w{index:04d}-t{target.id}.jpg"
            result.thumbnail_path = str(thumbnails.write(name, frame_index=frames.indices[frame_index]))
        timer.decode_ms += (time.perf_counter() - began) * 1000
        return results

    def _best_frames(self, frames: Frames, targets: list[TargetSpec]) -> list[int]:
        """For each target, the frame of the window it is most visible in (one frame scored at a time)."""
        if len(frames.indices) == 1:
            return [0] * len(targets)
        per_frame = np.array(
            [
                score_targets(
                    self.loaded,
                    frames.rgb[i : i + 1],
                    fps=1.0,
                    descriptions=[t.description for t in targets],
                    references=[self.references(t) for t in targets],
                )
                for i in range(len(frames.indices))
            ]
        )
        return [int(i) for i in per_frame.argmax(axis=0)]


def _sampled_fps(frames: Frames, start_s: float, end_s: float) -> float:
    span = max(end_s - start_s, 1e-3)
    return max(len(frames.indices) / span, 0.1)
