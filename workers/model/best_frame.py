"""The best frame of a matched window: the frame each matched target is most visible in.

A frame's score is the target's P(yes) for that frame alone, shown as a one-frame video (the score a
window would get if it were that frame). All frames of the window are encoded as one batch of one-frame
prefixes (one vision pass, one prefill), then the targets' questions of all frames are fed as one batch
over the repeated cache (a question with reference images alone over the frames, cropped back after).
The picks equal scoring each frame as its own video one at a time, which costs a vision pass and a
prefill per frame (tests/workers/test_best_frame.py keeps that as the reference). Given the window's
per-frame features from its scoring pass (``Prefix.frame_features``, LLaVA-NeXT-Video and SmolVLM2), the
one-frame prefixes take them instead of running the processor's pixels and the vision tower again
(workers/model/frame_features.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from workers.model.frame_features import ONE_FRAME_FPS, one_frame_ids, one_frame_prompts
from workers.model.loading import LoadedModel, on_device
from workers.model.prompts import question_for
from workers.model.scoring import (
    BATCH_TOKEN_BUDGET,
    device_memory_guard,
    encode_inputs,
    forward_suffixes,
    p_yes,
    per_target,
    question_suffixes,
)
from workers.model.suffixes import ReferenceImage

__all__ = ["ONE_FRAME_FPS", "best_frames"]


def best_frames(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    descriptions: list[str],
    references: Sequence[Sequence[ReferenceImage]],
    frame_features: torch.Tensor | None = None,
) -> list[int]:
    """For each description, the index of the frame of ``rgb`` (T, H, W, 3) with the highest P(yes);
    ``frame_features``: the per-frame video features of ``rgb`` kept from its scoring, if any."""
    references = per_target(descriptions, references)
    if len(rgb) == 1 or not descriptions:
        return [0] * len(descriptions)
    questions = [question_for(d, len(r)) for d, r in zip(descriptions, references, strict=True)]
    head, _ = loaded.adapter.question_parts(questions[0], images=len(references[0]))
    words = sum(1 for r in references if not r)  # questions batched over a repeated cache
    with torch.inference_mode(), device_memory_guard(f"finding the best of {len(rgb)} frames"):
        scores = np.concatenate(
            [
                _frame_scores(loaded, inputs, head, questions, references)
                for inputs in _one_frame_batches(loaded, rgb, head, words, frame_features)
            ]
        )
    return [int(i) for i in scores.argmax(axis=0)]


def _frame_scores(
    loaded: LoadedModel,
    inputs: dict[str, Any],
    head: str,
    questions: list[str],
    references: Sequence[Sequence[ReferenceImage]],
) -> np.ndarray:
    """P(yes) of every (frame, question) pair: one prefill of the frames, then the word questions of all
    frames as one batch over the repeated cache; a question with images (far longer) goes alone over the
    frames and is cropped back first, so the batch is not padded to it."""
    prefix = encode_inputs(loaded, inputs)
    frames = int(inputs["input_ids"].shape[0])
    rows = question_suffixes(loaded, prefix, head, questions, list(references))
    out = np.empty((frames, len(rows)))
    for j in (j for j, row in enumerate(rows) if row.features is not None):
        out[:, j] = p_yes(loaded, forward_suffixes(loaded, prefix, [rows[j]] * frames))
        prefix.cache.crop(-len(rows[j].ids))
    text = [j for j, row in enumerate(rows) if row.features is None]
    if text:
        if len(text) > 1:
            prefix.cache.batch_repeat_interleave(len(text))  # row f * len(text) + i: frame f, question i
        logits = forward_suffixes(loaded, prefix, [rows[j] for j in text] * frames)
        out[:, text] = np.array(p_yes(loaded, logits)).reshape(frames, len(text))
    return out


def _one_frame_batches(
    loaded: LoadedModel, rgb: np.ndarray, head: str, repeats: int, features: torch.Tensor | None
) -> list[dict[str, Any]]:
    """Inputs of every frame as its own one-frame video, in batches whose prefixes, repeated ``repeats``
    times, hold at most ``BATCH_TOKEN_BUDGET`` tokens (one batch unless the budget is passed); from the
    kept ``features`` where given, without the processor."""
    if features is not None:
        if len(features) != len(rgb):
            raise ValueError(f"features of {len(features)} frames for {len(rgb)} frames")
        ids = one_frame_ids(loaded, head, int(features.shape[1]), rgb[0])
        spans = _spans(len(rgb), int(ids.shape[1]), repeats)
        return [one_frame_prompts(loaded, ids, features[a:b]) for a, b in spans]
    everything = _inputs(loaded, rgb, head)
    spans = _spans(len(rgb), int(everything["input_ids"].shape[1]), repeats)
    if len(spans) == 1:
        return [everything]
    return [_inputs(loaded, rgb[a:b], head) for a, b in spans]


def _spans(frames: int, prompt_tokens: int, repeats: int) -> list[tuple[int, int]]:
    per_batch = max(1, BATCH_TOKEN_BUDGET // (prompt_tokens * max(1, repeats)))
    return [(i, min(i + per_batch, frames)) for i in range(0, frames, per_batch)]


def _inputs(loaded: LoadedModel, rgb: np.ndarray, head: str) -> dict[str, Any]:
    frames = [np.ascontiguousarray(rgb[i : i + 1], dtype=np.uint8) for i in range(len(rgb))]
    parts = [loaded.adapter.video_kwargs(frame, ONE_FRAME_FPS) for frame in frames]
    kwargs = {
        key: [item for part in parts for item in part[key]] if isinstance(value, list) else value
        for key, value in parts[0].items()
    }
    inputs = loaded.processor(text=[head] * len(frames), return_tensors="pt", **kwargs)
    mask = inputs.get("attention_mask")
    if mask is not None and not bool(mask.all()):
        raise ValueError("one-frame prompts of different lengths cannot share a batch")
    return on_device(loaded, dict(inputs))
