"""The recogniser: windows of sampled frames in, per-target P(yes) per window out, with evidence and a
thumbnail of the best frame for the windows that matched (at source resolution, capped: the model's frames
are too small to look at).

One decode session per media: every frame the analysis needs (each window's frames at the model's size
and, for thumbnails, at source resolution capped; the caption's frames) is planned before decoding and
read in one forward pass (``workers.decode.frames.open_media``). The pass runs in a background thread
``prefetch_windows`` windows ahead of the model (``workers.decode.prefetch``), so decoding window k+1 overlaps
scoring window k; ``decode_ms`` is the time the model waited for frames and ``params.decode_busy_ms`` the
decoder's own time. With ``window_batch_tokens`` consecutive windows are scored as one batch
(``workers.model.window_batches``).

Costs are spent where they matter: every target of a window shares one encoding of its frames; evidence
generation and best-frame search run only for windows above a target's threshold and, by default, only for
the best window of each run of matched windows, the one an alert carries; the run's other matched windows
get their middle frame as thumbnail (``model.evidence_windows``, ``workers.analysis.evidence_runs``).
Evidence continues from the window's kept encoding (a window's targets as one batched greedy decode); the
best frame comes from one batched pass over the window's frames as one-frame videos (from the frame
features the scoring kept, where the family allows). With window batching on (``window_batch_tokens``,
off by default), a window where some target matched is scored again on its own for that encoding. With the
source's static-scene gate on, a window whose picture has not changed inherits the last scored window's
results without a model run (``workers.analysis.static_gate``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vigil.config.settings import ModelSettings
from vigil.formats.probe import MediaInfo
from vigil.ops.contracts import Recognition, TargetSpec, WindowResult
from workers.analysis.evidence_runs import Kept, Match, RunEvidence
from workers.analysis.static_gate import StaticGate, inherit
from workers.analysis.thumbnails import THUMBNAIL_MAX_SIDE, ThumbnailWriter
from workers.decode.frames import Frames, analysis_requests, open_media, plan_windows
from workers.decode.prefetch import frame_stream
from workers.model.best_frame import best_frames
from workers.model.dialogue import describe
from workers.model.generation import window_evidence
from workers.model.loading import LoadedModel
from workers.model.prompts import TEMPLATE_VERSION
from workers.model.scoring import ScoredWindow, score_window
from workers.model.suffixes import ReferenceImage
from workers.model.window_batches import prefix_tokens, score_windows, window_groups

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class _Call:
    """One ``recognize`` call's running times, thumbnails and open runs (None: evidence on every match)."""

    thumbnails: ThumbnailWriter
    decode_ms: float = 0.0
    model_ms: float = 0.0
    runs: RunEvidence | None = None


class WindowRecognizer:
    """Implements vigil.ops.contracts.Recognizer over one loaded model."""

    template_version = TEMPLATE_VERSION

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
        self._prefix_tokens: dict[tuple[object, ...], int] = {}  # by frame shape and rate

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
        call = _Call(ThumbnailWriter(self.thumbnails_dir / str(media_id)))
        gate = StaticGate(static_gate)
        scored: dict[int, list[WindowResult]] = {}  # by window index, what later windows may inherit
        results: list[WindowResult] = []
        caption_frames: Frames | None = None
        if self.settings.evidence_windows == "best_of_run":
            call.runs = RunEvidence(
                self.loaded, settle=lambda kept, ms: self._settle(kept, ms, call), plain=self._middle(call)
            )
        began = time.perf_counter()
        with open_media(path, info=info) as media:
            call.decode_ms += (time.perf_counter() - began) * 1000
            windows = plan_windows(
                media.timed_info,
                window_s=self.settings.window_s,
                frames_per_window=per_window,
                max_windows=self.settings.max_windows,
            )
            requests = analysis_requests(
                windows,
                per_window,
                mode=self.settings.sampling,
                max_side=self.loaded.frame_side,
                full_side=THUMBNAIL_MAX_SIDE,
                caption=self.settings.caption,
            )
            # the decoder thread must stop before the file closes: this block ends before open_media's
            with frame_stream(media.frames(requests), depth=self.settings.prefetch_windows) as stream:
                for group, caption in window_groups(stream, len(windows), self._windows_per_batch):
                    caption_frames = caption or caption_frames
                    if group:
                        fresh = self._gated_group(group, gate, scored, windows, targets, call)
                        if call.runs is not None:
                            call.runs.see(fresh)
                        results.extend(fresh)
            decoded = media.decoded
        call.decode_ms += stream.wait_ms
        if call.runs is not None:
            call.runs.finish()
        caption = self._caption(caption_frames, call) if caption_frames is not None else None
        return Recognition(
            results=results,
            windows=len(windows),
            frames_decoded=decoded,
            decode_ms=call.decode_ms,
            model_ms=call.model_ms,
            params={
                "frames_per_window": per_window,
                "window_s": self.settings.window_s,
                "sampling": self.settings.sampling,
                "frame_side": self.loaded.frame_side,
                "static_gate": static_gate,
                "prefetch_windows": self.settings.prefetch_windows,
                "evidence": self.settings.evidence,
                "evidence_windows": self.settings.evidence_windows,
                "decode_busy_ms": round(stream.busy_ms, 1),
            },
            caption=caption,
        )

    def _gated_group(
        self,
        group: list[tuple[int, Frames]],
        gate: StaticGate,
        scored: dict[int, list[WindowResult]],
        windows: list[tuple[float, float]],
        targets: list[TargetSpec],
        call: _Call,
    ) -> list[WindowResult]:
        """The group's windows whose picture changed are scored (as one batch, ``_score_group``); the
        others inherit the last scored window's results, which may be in this very group, with no model run.
        ``scored`` keeps each scored window's results for the windows after it."""
        references = {index: gate.reference(index, frames) for index, frames in group}
        changed = [(index, frames) for index, frames in group if references[index] is None]
        for index, _ in changed:
            scored[index] = []
        if changed:
            for result in self._score_group(changed, windows, targets, call):
                scored[result.window_index].append(result)
        results: list[WindowResult] = []
        for index, frames in group:
            reference = references[index]
            if reference is None:
                results.extend(scored[index])
            else:  # an unchanged scene
                results.extend(inherit(scored[reference], frames, index, *windows[index], call.thumbnails))
        return results

    def _score_group(
        self,
        group: list[tuple[int, Frames]],
        windows: list[tuple[float, float]],
        targets: list[TargetSpec],
        call: _Call,
    ) -> list[WindowResult]:
        """Windows scored as one batch; a window where some target matched is scored again on its own
        (``_score_window``), so its evidence and best frame come from its own encoding."""
        if len(group) == 1 or not targets:
            return [
                r
                for index, frames in group
                for r in self._score_window(frames, targets, index, *windows[index], call)
            ]
        began = time.perf_counter()
        scores = score_windows(
            self.loaded,
            [(frames.rgb, frames.fps) for _, frames in group],
            descriptions=[t.description for t in targets],
            references=[self.references(t) for t in targets],
            token_budget=self.settings.window_batch_tokens,
        )
        call.model_ms += (time.perf_counter() - began) * 1000
        results: list[WindowResult] = []
        for (index, frames), window_scores in zip(group, scores, strict=True):
            start_s, end_s = windows[index]
            if any(p >= t.threshold for t, p in zip(targets, window_scores, strict=True)):
                results.extend(self._score_window(frames, targets, index, start_s, end_s, call))
            else:
                results.extend(
                    WindowResult(t.id, index, start_s, end_s, float(p), matched=False)
                    for t, p in zip(targets, window_scores, strict=True)
                )
        return results

    def _windows_per_batch(self, frames: Frames) -> int:
        """How many windows like ``frames`` fit the batch token budget (1: no batching)."""
        budget = self.settings.window_batch_tokens
        if budget <= 0:
            return 1
        key = (frames.rgb.shape, round(frames.fps, 3))
        if key not in self._prefix_tokens:
            self._prefix_tokens[key] = prefix_tokens(self.loaded, frames.rgb, frames.fps)
        return max(1, budget // self._prefix_tokens[key])

    def _caption(self, frames: Frames, call: _Call) -> str:
        """A few sentences about the whole clip, from frames spread over all of it."""
        began = time.perf_counter()
        limit = self.settings.caption_max_tokens
        text = describe(self.loaded, frames.rgb, fps=frames.fps, max_new_tokens=limit)
        call.model_ms += (time.perf_counter() - began) * 1000
        return text

    def _score_window(
        self,
        frames: Frames,
        targets: list[TargetSpec],
        index: int,
        start_s: float,
        end_s: float,
        call: _Call,
    ) -> list[WindowResult]:
        """The window's results; its matches go to the open runs (best_of_run) or get their evidence and
        best frame at once (every_match)."""
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
        call.model_ms += (time.perf_counter() - began) * 1000
        results = [
            WindowResult(t.id, index, start_s, end_s, float(p), matched=bool(p >= t.threshold))
            for t, p in zip(targets, window.scores, strict=True)
        ]
        hits = [i for i, r in enumerate(results) if r.matched]
        kept = Kept(window, frames, index)
        matches = [Match(results[i], kept, targets[i].description, references[i]) for i in hits]
        if call.runs is not None:
            call.runs.offer(matches)
        elif matches:
            self._settle(kept, matches, call)
        return results

    def _settle(self, kept: Kept, matches: list[Match], call: _Call) -> None:
        """Evidence (when on) and the best-frame thumbnail of one window's matches: one batched pass each."""
        descriptions = [m.description for m in matches]
        references = [list(m.references) for m in matches]
        began = time.perf_counter()
        best = self._best_frames(kept.frames, descriptions, references, kept.window.prefix.frame_features)
        call.model_ms += (time.perf_counter() - began) * 1000
        if self.settings.evidence:
            texts = self._evidence(kept.window, descriptions, references, call)
            for match, text in zip(matches, texts, strict=True):
                match.result.evidence = text
        full = kept.frames.full if kept.frames.full is not None else kept.frames.rgb
        for match, frame_index in zip(matches, best, strict=True):
            name = f"w{kept.index:04d}-t{match.result.target_id}.jpg"
            match.result.thumbnail_path = str(call.thumbnails.write(name, full[frame_index]))

    @staticmethod
    def _middle(call: _Call) -> Callable[[Match], None]:
        """The thumbnail of a match that is no run's best: its window's middle frame, one file a window."""

        def write(match: Match) -> None:
            kept = match.kept
            if kept.middle is None:
                kept.middle = str(call.thumbnails.middle(f"w{kept.index:04d}-middle.jpg", kept.frames))
            match.result.thumbnail_path = kept.middle

        return write

    def _evidence(
        self,
        window: ScoredWindow,
        descriptions: list[str],
        references: Sequence[Sequence[ReferenceImage]],
        call: _Call,
    ) -> list[str]:
        began = time.perf_counter()
        limit = self.settings.evidence_max_tokens
        texts = window_evidence(self.loaded, window, descriptions, references, max_new_tokens=limit)
        call.model_ms += (time.perf_counter() - began) * 1000
        return texts

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
