"""Reference images of targets given by example: checked, copied under their content hash, read back.

A reference is checked when it is named (``vigil targets add --image``, ``config check``): a readable
file with an image suffix, at most ``MAX_REFERENCE_BYTES``, that decodes, between ``MIN_SIDE_PX`` and
``MAX_SIDE_PX`` on each side, no more elongated than ``MAX_ASPECT``. It is then copied into
``<data_dir>/references/<sha256><suffix>``, so the target keeps working when the original is moved and
the same picture is stored once. Torch-free: the CLI and the settings use it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vigil.errors import ConfigError
from vigil.formats.types import IMAGE_EXTENSIONS

MAX_REFERENCE_BYTES = 20 * 1024 * 1024
MAX_IMAGES_PER_TARGET = 4
MIN_SIDE_PX = 32
MAX_SIDE_PX = 8192
MAX_ASPECT = 10.0


@dataclass(frozen=True)
class ReferenceInfo:
    """A checked reference image: what is stored about it on the target."""

    sha256: str
    file: str  # name under the references folder: <sha256><suffix>
    name: str  # the original file name, for people
    width: int
    height: int

    def as_row(self) -> dict[str, object]:
        return {
            "sha256": self.sha256,
            "file": self.file,
            "name": self.name,
            "width": self.width,
            "height": self.height,
        }


def check_reference(path: Path) -> ReferenceInfo:
    """Check one reference image; raises ConfigError with one line saying what is wrong."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ConfigError(f"{path}: not an image file (use {', '.join(sorted(IMAGE_EXTENSIONS))})")
    try:
        data = _read_bounded(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    width, height = _decoded_size(path, data)
    digest = hashlib.sha256(data).hexdigest()
    return ReferenceInfo(
        sha256=digest,
        file=digest + (".jpg" if suffix == ".jpeg" else suffix),
        name=path.name,
        width=width,
        height=height,
    )


def _read_bounded(path: Path) -> bytes:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with path.open("rb") as handle:
        data = handle.read(MAX_REFERENCE_BYTES + 1)
    if not data:
        raise ConfigError(f"{path}: empty file")
    if len(data) > MAX_REFERENCE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MB")
    return data


def _decoded_size(path: Path, data: bytes) -> tuple[int, int]:
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        # A small-scale decode first, so a decompression bomb is refused before a full-size one.
        small = cv2.imdecode(buffer, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if small is not None and max(small.shape[:2]) * 8 > MAX_SIDE_PX + 8:
            raise ConfigError(f"{path}: larger than {MAX_SIDE_PX} px on a side")
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ConfigError(f"{path}: does not decode as an image") from exc
    if image is None:
        raise ConfigError(f"{path}: does not decode as an image")
    height, width = image.shape[:2]
    if max(width, height) > MAX_SIDE_PX:
        raise ConfigError(f"{path}: {width}x{height} is larger than {MAX_SIDE_PX} px on a side")
    if min(width, height) < MIN_SIDE_PX:
        raise ConfigError(f"{path}: {width}x{height} is smaller than {MIN_SIDE_PX} px on a side")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ConfigError(f"{path}: {width}x{height} is more elongated than {MAX_ASPECT:g}:1")
    return width, height


def check_references(paths: list[Path]) -> list[ReferenceInfo]:
    """Check the reference images of one target (at most MAX_IMAGES_PER_TARGET, no repeats)."""
    if len(paths) > MAX_IMAGES_PER_TARGET:
        raise ConfigError(f"at most {MAX_IMAGES_PER_TARGET} reference images per target, got {len(paths)}")
    infos = [check_reference(p) for p in paths]
    hashes = [i.sha256 for i in infos]
    if len(set(hashes)) != len(hashes):
        raise ConfigError("the same reference image is given twice")
    return infos


def store_reference(path: Path, info: ReferenceInfo, folder: Path) -> Path:
    """Copy ``path`` to ``folder/info.file`` (atomically; kept when already there) and return it."""
    target = folder / info.file
    if target.is_file() and target.stat().st_size > 0:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise ConfigError(f"{path}: changed while it was being added; add it again")
    fd, tmp = tempfile.mkstemp(prefix=".ref-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_reference_rgb(path: Path) -> np.ndarray:
    """The stored reference's pixels, RGB (H, W, 3) uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(f"reference image {path} is missing or unreadable; add the target's images again")
    return np.ascontiguousarray(image[:, :, ::-1])
