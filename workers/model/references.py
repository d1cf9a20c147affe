"""Question suffixes that hold reference images ("is the car shown in this image in the video?").

A target given by example carries images. Its suffix after the shared video prefix is the question with
the images' tokens in it; the images never change between files, so the suffix (its token ids, the
vision tower's features for its image tokens and, for Qwen, its 3-D positions) is built once per target
and model and kept in a :class:`SuffixCache`, keyed by the images' content hashes and the question.
Scoring then scatters the cached features into the suffix's embeddings: no vision work per file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from workers.model.loading import LoadedModel, on_device
from workers.model.suffixes import ReferenceImage, Suffix

log = logging.getLogger(__name__)


def image_suffix(
    loaded: LoadedModel, trailing_text: str, tail: str, references: Sequence[ReferenceImage]
) -> Suffix:
    """The suffix ``trailing_text + tail`` whose tail holds the tokens of ``references``, cached."""
    key = (loaded.name, trailing_text, tail, *(r.sha256 for r in references))
    cached = loaded.suffixes.get(key)
    if cached is not None:
        return cached
    suffix = _build(loaded, trailing_text + tail, [r.rgb() for r in references])
    loaded.suffixes.put(key, suffix)
    log.info(
        "built a suffix with %d reference image(s) (%d image tokens) for %s",
        len(references),
        suffix.image_tokens,
        ", ".join(r.sha256[:12] for r in references),
    )
    return suffix


def _build(loaded: LoadedModel, text: str, images: list[np.ndarray]) -> Suffix:
    adapter = loaded.adapter
    if adapter.references_as_frames:
        from workers.model import pooled_references

        ids, pooled = pooled_references.suffix(loaded, text, images)
        return Suffix(ids=ids, features=pooled, span=len(ids))
    inputs = loaded.processor(
        text=[text], return_tensors="pt", add_special_tokens=False, **adapter.image_kwargs(images)
    )
    tensors = on_device(loaded, dict(inputs))
    text_keys = ("input_ids", "attention_mask", "mm_token_type_ids")
    vision = {k: v for k, v in tensors.items() if k not in text_keys}
    with torch.inference_mode():
        output = loaded.model.model.get_image_features(**vision)
    features = output.pooler_output
    if isinstance(features, list | tuple):
        features = torch.cat(list(features), dim=0)
    hidden = loaded.model.get_input_embeddings().embedding_dim
    features = features.reshape(-1, hidden).to(loaded.dtype)
    ids = tensors["input_ids"]
    placeholders = int((ids == loaded.image_token_id).sum())
    if placeholders != features.shape[0]:
        raise ValueError(f"{placeholders} image tokens in the suffix but {features.shape[0]} image features")
    positions, span = adapter.suffix_positions(loaded.model, tensors)
    return Suffix(
        ids=ids[0].tolist(),
        features=features,
        positions=None if positions is None else positions.cpu(),
        span=span,
    )
