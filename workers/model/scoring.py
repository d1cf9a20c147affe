"""Calibrated yes/no scores for many targets over one encoding of the video.

For each target the model is asked ``question_for(description)``; the score is P(yes) read from the
logits of the first answer token, normalised over the yes and no token variants (VQAScore). The video
comes first in the prompt, so it is a prefix shared by every question: it is encoded once with a cache,
then the question suffixes are scored either as one right-padded batch over a repeated cache
("batched") or one after another, cropping the cache back after each ("crop"). Crop-back copies
nothing, so it is the choice when memory matters.

A target given by example puts its reference images in its suffix, after the video ("Is the car shown
in this image in the video?"). Those suffixes are built once per process (workers/model/references.py): the
scoring forward scatters their cached image features into the embeddings, and Qwen's 3-D positions of
the image tokens come from get_rope_index over the suffix, shifted to follow the prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from vigil.errors import OutOfMemory
from workers.model.frame_features import keep_video_features
from workers.model.loading import LoadedModel, Prefix, on_device
from workers.model.prompts import question_for
from workers.model.references import image_suffix
from workers.model.suffixes import ReferenceImage, Suffix

log = logging.getLogger(__name__)

# Batched scoring repeats the prefix cache once per target; above this many cached tokens
# (targets x prefix length) "auto" crops back instead.
BATCH_TOKEN_BUDGET = 64 * 1024

Strategy = Literal["auto", "batched", "crop"]


@contextmanager
def device_memory_guard(what: str) -> Iterator[None]:
    """Translate CUDA out-of-memory into OutOfMemory at the boundary."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise OutOfMemory(f"out of device memory while {what}") from exc


def _check_frames(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 3:  # one image: a one-frame video
        rgb = rgb[None]
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.shape[0] < 1:
        raise ValueError(f"expected frames shaped (T, H, W, 3), got {rgb.shape}")
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def video_inputs(
    loaded: LoadedModel, rgb: np.ndarray, fps: float, text: str, images: Sequence[np.ndarray] = ()
) -> dict[str, Any]:
    """Inputs for one prompt text holding one video token (then ``images``), on the device."""
    if images and loaded.adapter.references_as_frames:
        from workers.model import pooled_references

        return pooled_references.full_prompt_inputs(loaded, _check_frames(rgb), fps, text, images)
    return on_device(loaded, loaded.adapter.full_inputs(text, _check_frames(rgb), fps, list(images)))


def _prefix_cut(loaded: LoadedModel, input_ids: torch.Tensor) -> int:
    boundary = loaded.adapter.boundary_ids()
    ids = input_ids[0].tolist()
    last = max((i for i, tok in enumerate(ids) if tok in boundary), default=-1)
    if last < 0:
        raise ValueError("the processed prompt holds no vision token")
    return last + 1


def encode_prefix(loaded: LoadedModel, rgb: np.ndarray, *, fps: float, head_text: str) -> Prefix:
    """Run the video prefix (``head_text`` ends with the video token) once and keep its cache."""
    return encode_inputs(loaded, video_inputs(loaded, rgb, fps, head_text))


def encode_inputs(loaded: LoadedModel, inputs: dict[str, Any]) -> Prefix:
    """Run processed prompts that end with a video (one row, or rows of the same length) and keep the
    cache of what comes up to the last vision token."""
    cut = _prefix_cut(loaded, inputs["input_ids"])
    trailing = loaded.tokenizer.decode(inputs["input_ids"][0, cut:].tolist(), skip_special_tokens=False)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        if key in inputs:
            inputs[key] = inputs[key][:, :cut]
    position_ids, next_position = loaded.adapter.prefix_positions(loaded.model, inputs)
    features = keep_video_features(loaded, inputs)
    out = loaded.model(**inputs, position_ids=position_ids, use_cache=True, logits_to_keep=1)
    return Prefix(
        cache=out.cache,
        length=cut,
        next_position=next_position,
        trailing_text=trailing,
        frame_features=features,
    )


def suffix_ids(loaded: LoadedModel, prefix: Prefix, tail_texts: list[str]) -> list[list[int]]:
    """Token ids of each text that follows the prefix (no vision tokens in any of them)."""
    tok = loaded.tokenizer
    return [tok.encode(prefix.trailing_text + tail, add_special_tokens=False) for tail in tail_texts]


def forward_text(
    loaded: LoadedModel, prefix: Prefix, rows: list[list[int]], *, past: int = 0, shift: int = 0
) -> torch.Tensor:
    """Feed right-padded text rows after the cached prefix (+ ``past`` cached tokens, whose positions
    advanced ``past + shift``). Returns the logits at each row's last real token."""
    return forward_suffixes(loaded, prefix, [Suffix.text(row) for row in rows], past=past, shift=shift)


def forward_suffixes(
    loaded: LoadedModel, prefix: Prefix, rows: list[Suffix], *, past: int = 0, shift: int = 0
) -> torch.Tensor:
    """Feed right-padded suffixes (text, or text with image features) after the cached prefix.

    The cache must already hold ``len(rows)`` rows. Returns the logits at each row's last real token.
    """
    device = loaded.device
    batch, width = len(rows), max(len(r.ids) for r in rows)
    pad = loaded.tokenizer.pad_token_id or 0
    ids = torch.full((batch, width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((batch, prefix.length + past + width), dtype=torch.long, device=device)
    mask[:, : prefix.length + past] = 1
    for i, row in enumerate(rows):
        ids[i, : len(row.ids)] = torch.tensor(row.ids, dtype=torch.long, device=device)
        mask[i, prefix.length + past : prefix.length + past + len(row.ids)] = 1
    start = prefix.next_position + past + shift
    adapter = loaded.adapter
    if all(r.positions is None for r in rows):
        positions = adapter.text_positions(start, width, batch, device)
    else:
        positions = torch.stack([adapter.row_positions(r.positions, start, width) for r in rows], dim=-2)
    out = loaded.model.model(
        **_token_inputs(loaded, ids, rows),
        attention_mask=mask,
        position_ids=positions.to(device),
        cache=prefix.cache,
        use_cache=True,
    )
    last = torch.tensor([len(r.ids) - 1 for r in rows], device=device)
    hidden = out.last_hidden_state[torch.arange(batch, device=device), last]
    return loaded.model.lm_head(hidden).float()


def _token_inputs(loaded: LoadedModel, ids: torch.Tensor, rows: list[Suffix]) -> dict[str, torch.Tensor]:
    """``input_ids``, or embeddings with the cached image features in place of the image tokens."""
    with_images = [r.features for r in rows if r.features is not None]
    if not with_images:
        return {"input_ids": ids}
    embeds = loaded.model.get_input_embeddings()(ids)
    where = torch.zeros_like(ids, dtype=torch.bool)
    for i, row in enumerate(rows):
        if row.features is not None:
            where[i, : len(row.ids)] = ids[i, : len(row.ids)] == loaded.image_token_id
    features = torch.cat(with_images).to(embeds.device, embeds.dtype)  # row-major, as masked_scatter fills
    return {"inputs_embeds": embeds.masked_scatter(where.unsqueeze(-1), features)}


def p_yes(loaded: LoadedModel, logits: torch.Tensor) -> list[float]:
    """P(yes) per row: softmax over logsumexp(yes variants) vs logsumexp(no variants)."""
    yes = torch.logsumexp(logits[:, list(loaded.yes_ids)], dim=-1)
    no = torch.logsumexp(logits[:, list(loaded.no_ids)], dim=-1)
    return torch.sigmoid(yes - no).tolist()


References = Sequence[Sequence[ReferenceImage]]


def _tails(loaded: LoadedModel, questions: list[tuple[str, int]]) -> tuple[str, list[str]]:
    parts = [loaded.adapter.question_parts(q, images=n) for q, n in questions]
    heads = {head for head, _ in parts}
    if len(heads) != 1:
        raise ValueError("the chat template puts question text before the video; cannot share the prefix")
    return parts[0][0], [tail for _, tail in parts]


def per_target(descriptions: list[str], references: References | None) -> list[Sequence[ReferenceImage]]:
    """Each description's reference images (none when ``references`` is None), one list per description."""
    if references is None:
        return [()] * len(descriptions)
    if len(references) != len(descriptions):
        raise ValueError(f"{len(references)} reference lists for {len(descriptions)} descriptions")
    return list(references)


def _suffixes(
    loaded: LoadedModel, prefix: Prefix, tails: list[str], refs: list[Sequence[ReferenceImage]]
) -> list[Suffix]:
    rows = suffix_ids(loaded, prefix, tails)
    return [
        image_suffix(loaded, prefix.trailing_text, tail, images) if images else Suffix.text(row)
        for tail, row, images in zip(tails, rows, refs, strict=True)
    ]


def question_suffixes(
    loaded: LoadedModel,
    prefix: Prefix,
    head: str,
    questions: list[str],
    references: list[Sequence[ReferenceImage]],
) -> list[Suffix]:
    """The suffix of each question (after its reference images) over a prefix encoded from ``head``."""
    q_head, tails = _tails(loaded, [(q, len(r)) for q, r in zip(questions, references, strict=True)])
    if q_head != head:
        raise ValueError("these questions do not share the prefix the video was encoded with")
    return _suffixes(loaded, prefix, tails, references)


def _pick(strategy: Strategy, n: int, prefix_len: int) -> Literal["batched", "crop"]:
    if strategy != "auto":
        return strategy
    return "batched" if n * prefix_len <= BATCH_TOKEN_BUDGET else "crop"


def _cropped(loaded: LoadedModel, prefix: Prefix, rows: list[Suffix]) -> torch.Tensor:
    parts = []
    for row in rows:
        parts.append(forward_suffixes(loaded, prefix, [row]))
        prefix.cache.crop(-len(row.ids))
    return torch.cat(parts)


def _batched(loaded: LoadedModel, prefix: Prefix, rows: list[Suffix]) -> torch.Tensor:
    """Text rows as one padded batch over a repeated cache. Suffixes with images can be far longer (Qwen:
    ~1,600 tokens for a 1,280 x 960 image) and are cropped back one by one first, so the batch is not
    padded to them."""
    out: list[torch.Tensor | None] = [None] * len(rows)
    text = [i for i, row in enumerate(rows) if row.features is None]
    for i in (i for i, row in enumerate(rows) if row.features is not None):
        out[i] = _cropped(loaded, prefix, [rows[i]])
    if text:
        if len(text) > 1:
            prefix.cache.batch_repeat_interleave(len(text))
        logits = forward_suffixes(loaded, prefix, [rows[i] for i in text])
        for j, i in enumerate(text):
            out[i] = logits[j : j + 1]
    return torch.cat([t for t in out if t is not None])


@dataclass(frozen=True)
class ScoredWindow:
    """The scores of one window and the encoding they came from, kept for the matched targets' evidence.

    ``prefix.cache`` may still hold scoring rows past the prefix (several rows after a batched pass);
    whoever continues from it crops back to ``prefix.length`` first (workers.model.generation does)."""

    scores: list[float]
    prefix: Prefix
    head: str  # the prompt text up to the video token, shared by every question about this window


def score_window(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    fps: float,
    descriptions: list[str],
    references: References | None = None,
    strategy: Strategy = "auto",
) -> ScoredWindow:
    """P(yes) per description (with its reference images, if any), encoding the video once; the
    encoding is kept so that evidence continues from it instead of encoding the video again."""
    if not descriptions:
        raise ValueError("no descriptions to score")
    refs = per_target(descriptions, references)
    questions = [(question_for(d, len(r)), len(r)) for d, r in zip(descriptions, refs, strict=True)]
    head, tails = _tails(loaded, questions)
    with torch.inference_mode(), device_memory_guard(f"scoring {len(descriptions)} targets"):
        prefix = encode_prefix(loaded, rgb, fps=fps, head_text=head)
        rows = _suffixes(loaded, prefix, tails, refs)
        chosen = _pick(strategy, len(rows), prefix.length)
        logits = _batched(loaded, prefix, rows) if chosen == "batched" else _cropped(loaded, prefix, rows)
        scores = p_yes(loaded, logits)
    log.debug("scored %d targets over %d prefix tokens (%s)", len(rows), prefix.length, chosen)
    return ScoredWindow(scores=scores, prefix=prefix, head=head)


def score_targets(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    fps: float,
    descriptions: list[str],
    references: References | None = None,
    strategy: Strategy = "auto",
) -> list[float]:
    """P(yes) per description (with its reference images, if any), encoding the video once."""
    if not descriptions:
        return []
    window = score_window(
        loaded, rgb, fps=fps, descriptions=descriptions, references=references, strategy=strategy
    )
    return window.scores


def score_targets_naive(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    fps: float,
    descriptions: list[str],
    references: References | None = None,
) -> list[float]:
    """P(yes) per description with one full forward (video and images included) each: the reference."""
    scores: list[float] = []
    with torch.inference_mode(), device_memory_guard("scoring targets one by one"):
        for description, refs in zip(descriptions, per_target(descriptions, references), strict=True):
            n = len(refs)
            head, tail = loaded.adapter.question_parts(question_for(description, n), images=n)
            inputs = video_inputs(loaded, rgb, fps, head + tail, [r.rgb() for r in refs])
            out = loaded.model(**inputs, logits_to_keep=1)
            scores.extend(p_yes(loaded, out.logits[:, -1].float()))
    return scores
