"""What a file's bytes say it is: the container family from its first bytes (magic numbers), the kind of
media each family holds, and the content type a family is served as. Names never decide: the watcher's
completeness check and the review page's file responses both read the bytes.
"""

from __future__ import annotations

from vigil.formats.types import MediaKind

ISO_TOP_BOXES = frozenset(
    {
        b"ftyp",
        b"moov",
        b"mdat",
        b"free",
        b"skip",
        b"wide",
        b"pnot",
        b"uuid",
        b"moof",
        b"mfra",
        b"styp",
        b"sidx",
        b"meta",
        b"pdin",
        b"emsg",
        b"prft",
        b"ssix",
        b"junk",
    }
)
TS_PACKET = 188
M2TS_PACKET = 192
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
HEAD_BYTES = TS_PACKET + 8  # what `sniff` wants to see
FAMILY_KIND: dict[str, MediaKind] = {
    "mp4": "video",
    "avi": "video",
    "mpeg-ts": "video",
    "matroska": "video",
    "flv": "video",
    "asf": "video",
    "mpeg-ps": "video",
    "jpeg": "image",
    "png": "image",
    "webp": "image",
    "bmp": "image",
    "tiff": "image",
}
# The content type each family is served as (a QuickTime brand and a WebM doctype refine two of them).
FAMILY_CONTENT_TYPE = {
    "mp4": "video/mp4",
    "avi": "video/x-msvideo",
    "mpeg-ts": "video/mp2t",
    "matroska": "video/x-matroska",
    "flv": "video/x-flv",
    "asf": "video/x-ms-asf",
    "mpeg-ps": "video/mpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}


def sniff(head: bytes) -> str | None:
    """The container family from the first bytes (at least 16 wanted), or None when unknown."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] in ISO_TOP_BOXES:
        return "mp4"
    if head.startswith(EBML_MAGIC):
        return "matroska"
    if head[:1] == b"\x47" and (len(head) <= TS_PACKET or head[TS_PACKET : TS_PACKET + 1] == b"\x47"):
        return "mpeg-ts"
    if head[4:5] == b"\x47":
        return "mpeg-ts"  # M2TS: a 4-byte timestamp before each packet
    if head.startswith(b"BM") and len(head) >= 6:
        return "bmp"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg-ps"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def content_type(head: bytes) -> tuple[MediaKind, str] | None:
    """The kind and content type of a file from its first `HEAD_BYTES` bytes, or None when they are no
    media container Vigil reads."""
    family = sniff(head)
    if family is None:
        return None
    media_type = FAMILY_CONTENT_TYPE[family]
    if family == "mp4" and head[4:8] == b"ftyp" and head[8:12] == b"qt  ":
        media_type = "video/quicktime"
    elif family == "matroska" and b"\x42\x82\x84webm" in head[:64]:
        media_type = "video/webm"
    return FAMILY_KIND[family], media_type
