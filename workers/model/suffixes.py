"""The containers of question suffixes: a reference image, one built suffix (token ids, the features of
its image tokens, Qwen's positions) and the per-process cache that keeps them by content hash and question.
Plain data, below the model's loading (``LoadedModel`` holds a cache) and the code that builds suffixes
(``workers.model.references``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vigil.formats.reference_images import load_reference_rgb

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
