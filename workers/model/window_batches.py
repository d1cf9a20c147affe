"""Several windows of one media scored as one batch of video prefixes.

``score_windows`` gives the same per-window, per-target P(yes) as ``score_targets`` called window by window
(tests hold it to 1e-4 on every family), with one model forward for the prefixes of a group of windows
instead of one per window: on an accelerator a single 8-frame window rarely fills it.

A group is consecutive windows whose processed prefixes line up: the same number of prefix tokens, the
same text after the last vision token and the same next position (Qwen's M-RoPE: windows sampled at
another rate, such as a merged last window, get other temporal positions and go in a group of their own),
and together at most ``token_budget`` prefix tokens (the configured ``window_batch_tokens``). A window that
lines up with no neighbour is a group of one: nothing is padded, so no position or mask changes.

The question suffixes then follow as one padded batch over the prefix cache repeated once per target, or,
when that exceeds ``scoring.BATCH_TOKEN_BUDGET``, one suffix at a time for all windows with the cache
cropped back after each. Targets with reference images are scored window by window (``score_targets``):
their suffixes are image-length and cropped one by one there anyway.

Only scores come out: no prefix is kept. The recogniser re-scores a window that matched on its own, so
evidence and best-frame search work from that window's own encoding (see ``workers.analysis.pipeline``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workers.decode.frames import Frames
from workers.model.loading import LoadedModel, Prefix
from workers.model.prompts import question_for
from workers.model.scoring import (
    BATCH_TOKEN_BUDGET,
    References,
    _prefix_cut,
    _tails,
    device_memory_guard,
    forward_suffixes,
    p_yes,
    per_target,
    score_targets,
    suffix_ids,
    video_inputs,
)
from workers.model.suffixes import Suffix

log = logging.getLogger(__name__)

Window = tuple[np.ndarray, float]  # (frames (T, H, W, 3) uint8 RGB, the fps the model is told)


@dataclass
class _Encoded:
    """One window's processed prefix inputs, before the model runs."""

    inputs: dict[str, Any]
    positions: torch.Tensor | None
    cut: int
    next_position: int
    trailing: str

    def lines_up(self, other: _Encoded) -> bool:
        return (self.cut, self.next_position, self.trailing) == (
            other.cut,
            other.next_position,
            other.trailing,
        )


def score_windows(
    loaded: LoadedModel,
    windows: Sequence[Window],
    *,
    descriptions: list[str],
    references: References | None = None,
    token_budget: int,
) -> list[list[float]]:
    """P(yes) per window per description, with the prefixes of windows that line up run as one batch."""
    if not descriptions:
        return [[] for _ in windows]
    refs = per_target(descriptions, references)
    if any(refs):
        return [
            score_targets(loaded, rgb, fps=fps, descriptions=descriptions, references=refs)
            for rgb, fps in windows
        ]
    head, tails = _tails(loaded, [(question_for(d, 0), 0) for d in descriptions])
    scores: list[list[float]] = []
    with torch.inference_mode(), device_memory_guard(f"scoring {len(windows)} windows"):
        encoded = [_encode(loaded, rgb, fps, head) for rgb, fps in windows]
        for group in _groups(encoded, token_budget):
            scores.extend(_score_group(loaded, group, tails))
    return scores


def prefix_tokens(loaded: LoadedModel, rgb: np.ndarray, fps: float) -> int:
    """Tokens of one window's video prefix (the processor only, no model call)."""
    head, _ = _tails(loaded, [(question_for("x", 0), 0)])
    return _prefix_cut(loaded, video_inputs(loaded, rgb, fps, head)["input_ids"])


def window_groups(
    stream: Iterable[tuple[int, Frames]], windows: int, limit_for: Callable[[Frames], int]
) -> Iterator[tuple[list[tuple[int, Frames]], Frames | None]]:
    """Consecutive windows of a frame stream gathered into groups of ``limit_for(first window)``, as
    (group, None); an item past the windows (the caption's frames) comes alone, as ([], frames)."""
    group: list[tuple[int, Frames]] = []
    for index, frames in stream:
        if index >= windows:
            yield [], frames
            continue
        group.append((index, frames))
        if len(group) >= limit_for(group[0][1]):
            yield group, None
            group = []
    if group:
        yield group, None


def _encode(loaded: LoadedModel, rgb: np.ndarray, fps: float, head: str) -> _Encoded:
    """As ``scoring.encode_prefix`` up to the model call."""
    inputs = video_inputs(loaded, rgb, fps, head)
    cut = _prefix_cut(loaded, inputs["input_ids"])
    trailing = loaded.tokenizer.decode(inputs["input_ids"][0, cut:].tolist(), skip_special_tokens=False)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        if key in inputs:
            inputs[key] = inputs[key][:, :cut]
    positions, next_position = loaded.adapter.prefix_positions(loaded.model, inputs)
    return _Encoded(inputs, positions, cut, next_position, trailing)


def _groups(encoded: list[_Encoded], token_budget: int) -> list[list[_Encoded]]:
    groups: list[list[_Encoded]] = []
    for item in encoded:
        last = groups[-1] if groups else None
        if last and item.lines_up(last[0]) and (len(last) + 1) * item.cut <= token_budget:
            last.append(item)
        else:
            groups.append([item])
    return groups


def _collate(group: list[_Encoded]) -> tuple[dict[str, Any], torch.Tensor | None]:
    """The group's inputs as one batch: every tensor joined on its first dimension (a batch dimension,
    or Qwen's flattened patches and grids, which the model splits again by ``video_grid_thw``)."""
    inputs: dict[str, Any] = {}
    for key, first in group[0].inputs.items():
        values = [g.inputs[key] for g in group]
        if isinstance(first, torch.Tensor):
            inputs[key] = torch.cat(values, dim=0)
        elif isinstance(first, list):
            inputs[key] = [v for value in values for v in value]
        elif all(v == first for v in values):
            inputs[key] = first
        else:
            raise ValueError(f"cannot batch processor output {key!r} of type {type(first).__name__}")
    positions = None
    if group[0].positions is not None:
        positions = torch.cat([g.positions for g in group if g.positions is not None], dim=1)  # (3, B, L)
    return inputs, positions


def _score_group(loaded: LoadedModel, group: list[_Encoded], tails: list[str]) -> list[list[float]]:
    inputs, positions = _collate(group)
    out = loaded.model(**inputs, position_ids=positions, use_cache=True, logits_to_keep=1)
    head = group[0]
    prefix = Prefix(
        cache=out.cache, length=head.cut, next_position=head.next_position, trailing_text=head.trailing
    )
    rows = [Suffix.text(ids) for ids in suffix_ids(loaded, prefix, tails)]
    windows, targets = len(group), len(rows)
    if windows * targets * head.cut <= BATCH_TOKEN_BUDGET:
        if targets > 1:
            prefix.cache.batch_repeat_interleave(targets)  # window-major: w0t0, w0t1, ..., w1t0, ...
        logits = forward_suffixes(loaded, prefix, [row for _ in group for row in rows])
        flat = p_yes(loaded, logits)
        log.debug("scored %d windows x %d targets in one batch", windows, targets)
        return [flat[w * targets : (w + 1) * targets] for w in range(windows)]
    by_question = []
    for row in rows:  # each question for all windows at once, then the cache cropped back
        by_question.append(p_yes(loaded, forward_suffixes(loaded, prefix, [row] * windows)))
        prefix.cache.crop(-len(row.ids))
    return [[by_question[t][w] for t in range(targets)] for w in range(windows)]
