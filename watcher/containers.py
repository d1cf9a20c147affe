"""Is a media file structurally whole? Read from its bytes (a few seeks and small reads), never by asking a
decoder: a truncated JPEG, MJPEG AVI, faststart or fragmented MP4 all open in OpenCV.

One check per container family, chosen by the file's magic bytes:

- MP4/MOV (ISO BMFF): top-level boxes chain to EOF (or to trailing bytes that are no box), a `moov` is
  present, an `mdat` follows the index (faststart) or precedes it, and a fragmented file's last `moof` is
  followed by its whole `mdat`;
- JPEG: the segments chain to a scan that ends with the EOI marker;
- PNG: the chunks chain to a whole `IEND`;
- AVI (and WebP): the RIFF chunk sizes add up to the file size;
- MPEG-TS: whole 188-byte packets (192 for M2TS), each beginning with the sync byte;
- MKV/WebM: the Segment's size fits the file (an unknown-size Segment: its children chain to EOF, Cues seen);
- BMP: the size in its header is the file size.

A verdict is `WHOLE`, `PARTIAL` (may still become whole: check again later) or `INVALID` (can never be
media: empty, unknown magic bytes, or image bytes under a video name and vice versa). Formats without a
structural check here (FLV, ASF, MPEG-PS, TIFF) are `WHOLE` by default: settle time and the probe decide.
"""

from __future__ import annotations

import enum
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vigil.formats.magic import (  # noqa: F401  (sniff: part of this module's interface)
    EBML_MAGIC,
    FAMILY_KIND,
    ISO_TOP_BOXES,
    M2TS_PACKET,
    TS_PACKET,
    sniff,
)
from vigil.formats.types import media_kind


class State(enum.Enum):
    WHOLE = "whole"
    PARTIAL = "partial"
    INVALID = "invalid"


@dataclass(frozen=True)
class Verdict:
    state: State
    reason: str
    family: str | None = None


def whole(family: str) -> Verdict:
    return Verdict(State.WHOLE, "structurally whole", family)


def partial(family: str, reason: str) -> Verdict:
    return Verdict(State.PARTIAL, f"incomplete {family}: {reason}", family)


UNCHECKED = frozenset({"flv", "asf", "mpeg-ps", "tiff"})


def describe_start(head: bytes) -> str:
    """The first bytes of a file as people read them: as text when they are printable ASCII
    (`the text "this is "`), else in hex (`bytes 00 00 01 b3`); never a Python bytes repr."""
    if head and all(32 <= byte < 127 for byte in head):
        return f'the text "{head.decode("ascii")}"'
    return f"bytes {head.hex(' ')}"


def check_file(path: str | os.PathLike[str]) -> Verdict:
    """The structural verdict for `path` as it is on disk now."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return Verdict(State.INVALID, "empty file")
        head = handle.read(TS_PACKET + 8)
        family = sniff(head)
        kind = media_kind(path)
        if family is None:
            if len(head) < 16:
                return Verdict(State.PARTIAL, f"only {size} bytes so far")
            return Verdict(State.INVALID, f"not a media container (starts with {describe_start(head[:8])})")
        if kind is not None and FAMILY_KIND[family] != kind:
            return Verdict(
                State.INVALID,
                f"named {Path(path).suffix} ({kind}) but its bytes are {family} ({FAMILY_KIND[family]})",
            )
        if family in UNCHECKED:
            return Verdict(State.WHOLE, f"no structural check for {family}", family)
        return CHECKS[family](handle, size)


# -- ISO BMFF (MP4, MOV, 3GP) --------------------------------------------------------------------------------


def check_mp4(handle: BinaryIO, size: int) -> Verdict:
    pos, boxes = 0, list[bytes]()
    while pos < size:
        handle.seek(pos)
        header = handle.read(16)
        if len(header) < 8:
            return partial("mp4", f"{size - pos} stray bytes after the last box at {pos}")
        length, kind = struct.unpack(">I4s", header[:8])
        if kind not in ISO_TOP_BOXES and boxes:
            break  # trailing bytes that are no box (writers that pad or tag the end): judged by the rest
        if length == 1:
            if len(header) < 16:
                return partial("mp4", f"box {kind!r} at {pos} cut in its header")
            length = struct.unpack(">Q", header[8:16])[0]
        elif length == 0:
            length = size - pos  # "to the end of the file": only the last box may say so
        if length < 8:
            return Verdict(State.INVALID, f"corrupt MP4: box {kind!r} at {pos} has size {length}", "mp4")
        if pos + length > size:
            name = kind.decode("latin-1")
            return partial("mp4", f"box {name!r} at {pos} needs {pos + length} bytes, file has {size}")
        boxes.append(kind)
        pos += length
    if b"moov" not in boxes:
        return partial("mp4", "no moov box (index) yet")
    if b"moof" in boxes:
        last_moof = len(boxes) - 1 - boxes[::-1].index(b"moof")
        if b"mdat" not in boxes[last_moof + 1 :]:
            return partial("mp4", "the last moof has no mdat after it")
    elif b"mdat" not in boxes:
        return partial("mp4", "no mdat box (media data) yet")
    return whole("mp4")


# -- JPEG ----------------------------------------------------------------------------------------------------

# After the start of a scan, the next marker: FF followed by neither a stuffed 00, a restart marker nor fill.
SCAN_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def check_jpeg(handle: BinaryIO, size: int) -> Verdict:
    handle.seek(0)
    data = handle.read()
    pos = 2
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > len(data):
            return partial("jpeg", f"cut at byte {len(data)} before a marker")
        if data[pos] != 0xFF:
            return Verdict(State.INVALID, f"corrupt JPEG: no marker at byte {pos}", "jpeg")
        marker = data[pos + 1]
        if marker == 0xD9:
            return whole("jpeg")
        if marker in STANDALONE:
            pos += 2
            continue
        if pos + 4 > len(data):
            return partial("jpeg", f"segment header at {pos} cut")
        end = pos + 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if end > len(data):
            return partial("jpeg", f"segment {marker:#04x} at {pos} needs {end} bytes, file has {size}")
        pos = end
        if marker == 0xDA:  # start of scan: entropy-coded data until the next real marker
            found = SCAN_MARKER.search(data, pos)
            if found is None:
                return partial("jpeg", "no end-of-image marker yet")
            pos = found.start()


# -- PNG -----------------------------------------------------------------------------------------------------


def check_png(handle: BinaryIO, size: int) -> Verdict:
    pos = 8
    while pos + 8 <= size:
        handle.seek(pos)
        length, kind = struct.unpack(">I4s", handle.read(8))
        end = pos + 12 + length
        if end > size:
            return partial("png", f"chunk {kind!r} at {pos} needs {end} bytes, file has {size}")
        if kind == b"IEND":
            return whole("png")
        pos = end
    return partial("png", "no IEND chunk yet")


# -- RIFF (AVI, WebP) ----------------------------------------------------------------------------------------


def check_riff(handle: BinaryIO, size: int, family: str) -> Verdict:
    """AVI files over 1 GB chain several RIFF chunks (RIFF AVI, then RIFF AVIX ...)."""
    pos = 0
    while pos < size:
        handle.seek(pos)
        header = handle.read(12)
        if len(header) < 12:
            if b"RIFF".startswith(header[:4]):
                return partial(family, f"RIFF header at {pos} cut")
            return whole(family)  # a few stray bytes after the last chunk
        if header[:4] != b"RIFF":
            if pos == 0:
                return Verdict(State.INVALID, "corrupt RIFF header", family)
            return whole(family)  # trailing data after the last RIFF chunk
        length = struct.unpack("<I", header[4:8])[0]
        end = pos + 8 + length + (length & 1)
        if pos + 8 + length > size:
            return partial(family, f"RIFF size says {pos + 8 + length} bytes, file has {size}")
        pos = end
    return whole(family)


def check_avi(handle: BinaryIO, size: int) -> Verdict:
    return check_riff(handle, size, "avi")


def check_webp(handle: BinaryIO, size: int) -> Verdict:
    return check_riff(handle, size, "webp")


# -- MPEG-TS -------------------------------------------------------------------------------------------------


def check_ts(handle: BinaryIO, size: int) -> Verdict:
    handle.seek(0)
    head = handle.read(5)
    packet, sync_at = (M2TS_PACKET, 4) if head[:1] != b"\x47" and head[4:5] == b"\x47" else (TS_PACKET, 0)
    if size % packet:
        return partial("mpeg-ts", f"{size % packet} bytes of a {packet}-byte packet at the end")
    handle.seek(size - packet + sync_at)
    if handle.read(1) != b"\x47":
        return Verdict(State.INVALID, "corrupt MPEG-TS: the last packet has no sync byte", "mpeg-ts")
    return whole("mpeg-ts")


# -- Matroska / WebM -----------------------------------------------------------------------------------------

SEGMENT_ID = b"\x18\x53\x80\x67"
CUES_ID = b"\x1c\x53\xbb\x6b"


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool] | None:
    """(value, length, all-ones) of the EBML variable-length integer at `pos`, None when cut."""
    if pos >= len(data) or data[pos] == 0:
        return None
    length = 8 - data[pos].bit_length() + 1
    if pos + length > len(data):
        return None
    value = int.from_bytes(data[pos : pos + length], "big")
    unknown = value == (1 << (7 * length)) - 1 + (1 << (7 * length))  # marker + all ones
    return (value if keep_marker else value & ((1 << (7 * length)) - 1)), length, unknown


def _element(handle: BinaryIO, pos: int) -> tuple[bytes, int, int | None] | None:
    """(id bytes, header length, data size or None when unknown) of the element at `pos`; None when cut."""
    handle.seek(pos)
    data = handle.read(12)
    ident = _vint(data, 0, keep_marker=True)
    if ident is None:
        return None
    size = _vint(data, ident[1], keep_marker=False)
    if size is None:
        return None
    return data[: ident[1]], ident[1] + size[1], None if size[2] else size[0]


def check_matroska(handle: BinaryIO, size: int) -> Verdict:
    pos = 0
    while pos < size:
        element = _element(handle, pos)
        if element is None:
            return partial("matroska", f"element header at {pos} cut")
        ident, header, length = element
        if ident == SEGMENT_ID:
            if length is None:
                return _unknown_size_segment(handle, pos + header, size)
            end = pos + header + length
            if end > size:
                return partial("matroska", f"segment ends at {end}, file has {size}")
            return whole("matroska")
        if length is None:
            return Verdict(State.INVALID, "corrupt Matroska: unknown-size element", "matroska")
        pos += header + length
    return partial("matroska", "no segment yet")


def _unknown_size_segment(handle: BinaryIO, pos: int, size: int) -> Verdict:
    """A live-written segment: whole when its children chain to EOF and the Cues (written last) are there."""
    cues = False
    while pos < size:
        element = _element(handle, pos)
        if element is None:
            return partial("matroska", f"element header at {pos} cut")
        ident, header, length = element
        if length is None:
            return partial("matroska", "segment and cluster of unknown size (still being written)")
        if pos + header + length > size:
            end = pos + header + length
            return partial("matroska", f"element at {pos} needs {end} bytes, file has {size}")
        cues = cues or ident == CUES_ID
        pos += header + length
    return whole("matroska") if cues else partial("matroska", "segment of unknown size and no Cues yet")


# -- BMP -----------------------------------------------------------------------------------------------------


def check_bmp(handle: BinaryIO, size: int) -> Verdict:
    handle.seek(2)
    declared = struct.unpack("<I", handle.read(4))[0]
    if declared > size:
        return partial("bmp", f"header says {declared} bytes, file has {size}")
    return whole("bmp")


CHECKS = {
    "mp4": check_mp4,
    "jpeg": check_jpeg,
    "png": check_png,
    "avi": check_avi,
    "webp": check_webp,
    "mpeg-ts": check_ts,
    "matroska": check_matroska,
    "bmp": check_bmp,
}
