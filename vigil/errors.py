"""Every error Vigil raises on purpose, in one hierarchy.

    VigilError
    ├── ConfigError            settings or a rule that cannot be used (names the key)
    ├── MediaError             a file that cannot be analysed; terminal, never retried
    │   ├── UnreadableMedia    truncated, empty, not a container, no decodable frame
    │   └── UnsupportedMedia   a kind of file Vigil does not analyse
    ├── ModelError
    │   ├── ModelUnavailable   weights or processor cannot be loaded (offline, missing)
    │   └── UnsupportedModel   a model family Vigil cannot score with
    ├── TransientError         worth retrying: database busy, broker hiccup, CUDA out of memory
    │   └── OutOfMemory        retry with fewer frames
    └── QueryRefused           `vigil sql` refused a statement that is not a plain read

Errors from OpenCV, transformers, redis and SQL drivers are translated at the boundary with
``raise ... from exc`` so callers only ever see these.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base of every error Vigil raises on purpose."""


class ConfigError(VigilError):
    """A setting, a target or a rule that cannot be used."""


class MediaError(VigilError):
    """A media file that cannot be analysed. Terminal: retrying does not help."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class UnreadableMedia(MediaError):
    """Truncated, empty, not a container, or without a single decodable frame."""


class UnsupportedMedia(MediaError):
    """A file whose kind Vigil does not analyse."""


class ModelError(VigilError):
    """The video-language model cannot be used."""


class ModelUnavailable(ModelError):
    """Weights or processor cannot be loaded (missing, offline, corrupt)."""


class UnsupportedModel(ModelError):
    """A model family Vigil has no scoring adapter for."""


class TransientError(VigilError):
    """A failure worth retrying later: database busy, broker hiccup, device memory."""


class OutOfMemory(TransientError):
    """The device ran out of memory; retry with fewer frames per window."""


class QueryRefused(VigilError):
    """`vigil sql` refused a statement that is not a plain read, or it ran past its time limit."""
