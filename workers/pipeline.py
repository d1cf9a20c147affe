"""The recogniser: windows of sampled frames in, per-target P(yes) per window out, with evidence and a
thumbnail of the best frame for the windows that matched (at source resolution, capped: the model's frames
are too small to look at).

One decode session per media: every frame the analysis needs (each window's frames at the model's size
and, for thumbnails, at source resolution capped; the caption's frames) is planned before decoding and
read in one forward pass (``workers.frames.open_media``). Windows are scored as the pass produces them.

Costs are spent where they matter: every target of a window shares one encoding of its frames; evidence
generation and best-frame search run only for windows above a target's threshold. Evidence continues
from the window's kept encoding (all matched targets as one batched greedy decode); the best frame comes
from one batched pass over the window's frames as one-frame videos. With the source's static-scene gate
on, a window whose picture has not changed inherits the last scored window's results without a model run
(``workers.static_gate``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vigil.contracts import Recognition, TargetSpec, WindowResult
from vigil.media import MediaInfo
from vigil.settings import ModelSettings
from workers.best_frame import best_frames
from workers.dialogue import describe
from workers.frames import FrameRequest, Frames, open_media, plan_windows
from workers.generation import window_evidence
from workers.models import LoadedModel
from workers.references import ReferenceImage
from workers.scoring import PROMPT_VERSION, score_window
from workers.static_gate import StaticGate, inherit
from workers.thumbnails import THUMBNAIL_MAX_SIDE, ThumbnailWriter

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class _Timer:
    decode_ms: float = 0.0
    model_ms: float = 0.0


class WindowRecognizer:
    """Implements vigil.contracts.Recognizer over one loaded model."""

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
        static_gate: float = 0.0,
    ) -> Recognition:
        per_window = frames_per_window or self.settings.frames_per_window
        timer = _Timer()
        gate = StaticGate(static_gate)
        scored: dict[int, list[WindowResult]] = {}  # by window index, what later windows may inherit
        thumbnails = ThumbnailWriter(self.thumbnails_dir / str(media_id))
        results: list[WindowResult] = []
        caption_frames: Frames | None = None
        began = time.perf_counter()
        with open_media(path, info=info) as media:
            timer.decode_ms += (time.perf_counter() - began) * 1000
            windows = plan_windows(
                media.timed_info,
                window_s=self.settings.window_s,
                frames_per_window=per_window,
                max_windows=self.settings.max_windows,
            )
            requests = self._requests(windows, per_window)
            for index, frames in _timed(media.frames(requests), timer):
                if index < len(windows):
                    start_s, end_s = windows[index]
                    reference = gate.reference(index, frames)
                    if reference is not None:  # an unchanged scene: no model run
                        results.extend(inherit(scored[reference], frames, index, start_s, end_s, thumbnails))
                        continue
                    scored[index] = self._score_window(
                        frames, targets, index, start_s, end_s, thumbnails, timer
                    )
                    results.extend(scored[index])
                else:
                    caption_frames = frames
            decoded = media.decoded
        caption = self._caption(caption_frames, timer) if caption_frames is not None else None
        return Recognition(
            results=results,
            windows=len(windows),
            frames_decoded=decoded,
            decode_ms=timer.decode_ms,
            model_ms=timer.model_ms,
            params={
                "frames_per_window": per_window,
                "window_s": self.settings.window_s,
                "sampling": self.settings.sampling,
                "frame_side": self.loaded.frame_side,
                "static_gate": static_gate,
            },
            caption=caption,
        )

    def _requests(self, windows: list[tuple[float, float]], per_window: int) -> list[FrameRequest]:
        """Each window's frames (with thumbnail candidates at source resolution), then the caption's."""
        mode, side, thumb = self.settings.sampling, self.loaded.frame_side, THUMBNAIL_MAX_SIDE
        requests = [
            FrameRequest(per_window, start_s=a, end_s=b, mode=mode, max_side=side, full_side=thumb)
            for a, b in windows
        ]
        if self.settings.caption:
            requests.append(FrameRequest(per_window, mode=mode, max_side=side))
        return requests

    def _caption(self, frames: Frames, timer: _Timer) -> str:
        """A few sentences about the whole clip, from frames spread over all of it."""
        began = time.perf_counter()
        limit = self.settings.caption_max_tokens
        text = describe(self.loaded, frames.rgb, fps=frames.fps, max_new_tokens=limit)
        timer.model_ms += (time.perf_counter() - began) * 1000
        return text

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
        began = time.perf_counter()
        references = [self.references(t) for t in targets]
        window = score_window(
            self.loaded,
            frames.rgb,
            fps=frames.fps,
            descriptions=[t.description for t in targets],
            references=references,
        )
        results = [
            WindowResult(t.id, index, start_s, end_s, float(p), matched=bool(p >= t.threshold))
            for t, p in zip(targets, window.scores, strict=True)
        ]
        hits = [i for i, r in enumerate(results) if r.matched]
        descriptions = [targets[i].description for i in hits]
        hit_references = [references[i] for i in hits]
        best = self._best_frames(frames, descriptions, hit_references, window.prefix.frame_features)
        if self.settings.evidence and hits:
            texts = window_evidence(
                self.loaded,
                window,
                descriptions,
                hit_references,
                max_new_tokens=self.settings.evidence_max_tokens,
            )
            for i, text in zip(hits, texts, strict=True):
                results[i].evidence = text
        timer.model_ms += (time.perf_counter() - began) * 1000
        full = frames.full if frames.full is not None else frames.rgb
        for i, frame_index in zip(hits, best, strict=True):
            name = f"w{index:04d}-t{targets[i].id}.jpg"
            results[i].thumbnail_path = str(thumbnails.write(name, full[frame_index]))
        return results

    def _best_frames(
        self,
        frames: Frames,
        descriptions: list[str],
        references: list[list[ReferenceImage]],
        frame_features: torch.Tensor | None,
    ) -> list[int]:
        """For each matched target, the frame of the window it is most visible in (from the features the
        scoring pass kept, where the family allows)."""
        if not descriptions:
            return []
        return best_frames(
            self.loaded,
            frames.rgb,
            descriptions=descriptions,
            references=references,
            frame_features=frame_features,
        )


def _timed(frames: Iterator[tuple[int, Frames]], timer: _Timer) -> Iterator[tuple[int, Frames]]:
    """The decode pass's items, its time (not the consumer's) added to ``timer.decode_ms``."""
    while True:
        began = time.perf_counter()
        item = next(frames, None)
        timer.decode_ms += (time.perf_counter() - began) * 1000
        if item is None:
            return
        yield item
