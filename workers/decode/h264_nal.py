"""What an H.264 packet's NAL unit headers say about decoding it.

Non-reference pictures (``nal_ref_idc == 0``, ``disposable``): a decode pass that wants the frame shown
at time t must decode every reference picture from the keyframe before t, but a non-reference picture
shown before t is neither shown nor used by anything after it, so its packet can be left out (players do
this to fast-forward). Only H.264 is judged: its non-reference flag is absolute. HEVC's ``_N`` picture
types are non-reference only within their temporal sub-layer, so HEVC packets are always decoded.

IDR pictures (``idr_slices``): an IDR picture refers to nothing before it and restarts the picture order,
so a decoder can be fed one IDR packet after another from anywhere in the file (no flush between) and
shows each exactly as a sequential decode does. Other keyframes (x264's open-GOP I pictures, recovery
points) carry on the picture numbering of what came before them, so they are decoded after a flush.

Packets come length-prefixed (MP4, MKV: ``avcC`` extradata gives the prefix size) or with Annex B start
codes (MPEG-TS).
"""

from __future__ import annotations

VCL_TYPES = (1, 5)  # coded slice of a non-IDR / IDR picture
IDR_TYPE = 5
SCAN_NALS = 8  # a packet's first few NAL units hold its slices (after AUD/SEI/parameter sets)


def length_size(codec: str, extradata: bytes | None) -> int | None:
    """The NAL length-prefix size for H.264 (0 for Annex B start codes); None for other codecs."""
    if codec != "h264":
        return None
    if extradata and len(extradata) >= 5 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    return 0


def disposable(data: bytes | memoryview, prefix: int) -> bool:
    """Whether every slice in this H.264 access unit is a non-reference picture's."""
    seen = False
    for header in _nal_headers(data, prefix):
        if header & 0x1F in VCL_TYPES:
            if header & 0x60:
                return False
            seen = True
    return seen


def idr_slices(data: bytes | memoryview, prefix: int) -> int:
    """How many slices this access unit's IDR picture has; 0 when it is not an IDR picture."""
    types = [header & 0x1F for header in _nal_headers(data, prefix)]
    slices = [t for t in types if t in VCL_TYPES]
    return len(slices) if slices and all(t == IDR_TYPE for t in slices) else 0


def _nal_headers(data: bytes | memoryview, prefix: int) -> list[int]:
    headers: list[int] = []
    n = len(data)
    if prefix:
        i = 0
        while i + prefix < n and len(headers) < SCAN_NALS:
            size = int.from_bytes(data[i : i + prefix], "big")
            headers.append(data[i + prefix])
            i += prefix + size
        return headers
    i = 0
    while len(headers) < SCAN_NALS:
        j = bytes(data[i : min(n, i + 65536)]).find(b"\x00\x00\x01")
        if j < 0 or i + j + 3 >= n:
            break
        headers.append(data[i + j + 3])
        i += j + 3
    return headers
