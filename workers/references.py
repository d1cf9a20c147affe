"""Question suffixes that hold reference images ("is the car shown in this image in the video?").

A target given by example carries images. Its suffix after the shared video prefix is the question with
the images' tokens in it; the images never change between files, so the suffix (its token ids, the
vision tower's features for its image tokens and, for Qwen, its 3-D positions) is built once per target
and model and kept in a :class:`SuffixCache`, keyed by the images' content hashes and the question.
Scoring then scatters the cached features into the suffix's embeddings: no vision work per file.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vigil.references import load_reference_rgb

if TYPE_CHECKING:
    from workers.models import LoadedModel

log = logging.getLogger(__name__)

# Image tokens kept in one process's cache; the least recently used suffixes go first beyond it
# (Qwen2.5-VL-7B, a 1,280 x 960 image: ~1,600 tokens x 3,584 x 2 bytes ≈ 11 MB; LLaVA-NeXT-Video: 144 tokens).
CACHE_TOKEN_BUDGET = 64 * 1024


@dataclass(frozen=True)
class ReferenceImage:
    """One reference image: its content hash (the cache key) and where its pixels are read from."""

    sha256: str
    path: Path

    def rgb(self) -> np.ndarray:
        return load_reference_rgb(self.path)


@dataclass(frozen=True)
class Suffix:
    """The tokens of one question after the video prefix, with the features of its image tokens."""

    ids: list[int]
    features: torch.Tensor | None = None  # (image tokens, hidden), in the order of the image tokens
    positions: torch.Tensor | None = None  # relative to the prefix's next position (Qwen: 3 x len)
    span: int = 0  # positions the suffix advances (fewer than its tokens when Qwen's images are in it)

    @classmethod
    def text(cls, ids: list[int]) -> Suffix:
        return cls(ids=ids, span=len(ids))

    @property
    def image_tokens(self) -> int:
        return 0 if self.features is None else int(self.features.shape[0])


class SuffixCache:
    """Suffixes with images, built once per process; safe to share between threads."""

    def __init__(self, token_budget: int = CACHE_TOKEN_BUDGET) -> None:
        self.token_budget = token_budget
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, ...], Suffix] = OrderedDict()
        self.builds = 0  # suffixes built (cache misses), for tests and logs

    def get(self, key: tuple[str, ...]) -> Suffix | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, ...], suffix: Suffix) -> None:
        with self._lock:
            self.builds += 1
            self._items[key] = suffix
            while len(self._items) > 1 and self._tokens() > self.token_budget:
                self._items.popitem(last=False)

    def _tokens(self) -> int:
        return sum(s.image_tokens for s in self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def lengths(self) -> list[int]:
        """Tokens in each cached suffix."""
        with self._lock:
            return [len(s.ids) for s in self._items.values()]

    def tails(self) -> list[str]:
        """The question text of every cached suffix (what was asked with images)."""
        with self._lock:
            return [key[2] for key in self._items]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


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
        from workers import pooled_references

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


def on_device(loaded: LoadedModel, inputs: dict[str, Any]) -> dict[str, Any]:
    """Processor outputs on the model's device, floating point ones in its dtype."""
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(loaded.device)
            if value.is_floating_point():
                value = value.to(loaded.dtype)
        out[key] = value
    return out
