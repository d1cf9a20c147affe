"""The structural completeness checks on real encoders' files and on truncated copies at many cut points."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.containers import State, check_file
from workers.testing.formats import WRITERS, write_faststart_mp4, write_fragmented_mp4, write_jpeg


def cut_points(size: int) -> Iterator[int]:
    """Every byte of the first 300 (headers), about 150 spread over the rest, and the last 40."""
    yield from range(1, min(size, 300))
    yield from range(300, size, max(1, size // 150))
    yield from range(max(1, size - 40), size)


def top_level_boxes(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, end, type) of each top-level ISO BMFF box, parsed independently of the code under test."""
    boxes, pos = [], 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        boxes.append((pos, pos + length, kind))
        pos += length
    return boxes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    return {name: writer(folder / f"{name}{suffix}") for name, (suffix, writer) in WRITERS.items()}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_whole_file_is_whole(corpus: dict[str, Path], name: str) -> None:
    verdict = check_file(corpus[name])
    assert verdict.state is State.WHOLE, verdict


@pytest.mark.parametrize("name", sorted(set(WRITERS) - {"fragmented-mp4", "mpeg-ts"}))
def test_every_cut_is_partial(corpus: dict[str, Path], name: str, tmp_path: Path) -> None:
    data = corpus[name].read_bytes()
    cut = tmp_path / corpus[name].name
    wrong = []
    for n in cut_points(len(data)):
        cut.write_bytes(data[:n])
        verdict = check_file(cut)
        if verdict.state is not State.PARTIAL:
            wrong.append((n, verdict))
    assert not wrong, f"{len(wrong)} cuts of {len(data)} bytes not partial, e.g. {wrong[:3]}"


def test_fragmented_mp4_is_whole_only_at_a_fragment_boundary(corpus: dict[str, Path], tmp_path: Path) -> None:
    data = corpus["fragmented-mp4"].read_bytes()
    boxes = top_level_boxes(data)
    kinds = [kind for _, _, kind in boxes]
    assert kinds.count(b"moof") >= 3 and kinds[:2] == [b"ftyp", b"moov"], kinds
    # A prefix ending right after a moof's mdat is a complete fragmented file; anything else is not.
    fragment_ends = {end for _, end, kind in boxes if kind == b"mdat"}
    cut, whole_at = tmp_path / "frag.mp4", set()
    boundaries = {*(end - 1 for _, end, _ in boxes), *(end for _, end, _ in boxes)}
    for n in sorted({*cut_points(len(data)), *boundaries}):
        if n >= len(data):
            continue
        cut.write_bytes(data[:n])
        if check_file(cut).state is State.WHOLE:
            whole_at.add(n)
    assert whole_at == {end for end in fragment_ends if end < len(data)}
    # The last moof alone (its mdat not begun) is partial.
    last_moof_end = max(end for _, end, kind in boxes if kind == b"moof")
    cut.write_bytes(data[:last_moof_end])
    assert check_file(cut).state is State.PARTIAL


def test_mpeg_ts_is_whole_only_at_packet_boundaries(corpus: dict[str, Path], tmp_path: Path) -> None:
    data = corpus["mpeg-ts"].read_bytes()
    assert len(data) % 188 == 0 and data[0] == 0x47
    cut = tmp_path / "cut.ts"
    for n in cut_points(len(data)):
        cut.write_bytes(data[:n])
        expected = State.WHOLE if n % 188 == 0 else State.PARTIAL
        assert check_file(cut).state is expected, n


def test_faststart_and_plain_mp4_box_order(corpus: dict[str, Path]) -> None:
    """The corpus really has both layouts, so both orders are exercised by the cut tests."""
    fast = [k for _, _, k in top_level_boxes(corpus["faststart-mp4"].read_bytes())]
    plain = [k for _, _, k in top_level_boxes(corpus["plain-mp4"].read_bytes())]
    assert fast.index(b"moov") < fast.index(b"mdat")
    assert plain.index(b"mdat") < plain.index(b"moov")


def test_a_cut_at_a_box_boundary_is_partial(tmp_path: Path) -> None:
    """ftyp+moov of a faststart file (no mdat yet), and mdat without moov of a plain one, chain to EOF."""
    data = write_faststart_mp4(tmp_path / "f.mp4").read_bytes()
    boxes = top_level_boxes(data)
    moov_end = next(end for _, end, kind in boxes if kind == b"moov")
    (tmp_path / "cut.mp4").write_bytes(data[:moov_end])
    verdict = check_file(tmp_path / "cut.mp4")
    assert verdict.state is State.PARTIAL and "mdat" in verdict.reason


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.mp4", b"", "empty file"),
        ("text.mp4", b"this is not a video, just text " * 10, "not a media container"),
        ("text.jpg", b"<html><body>404 not found</body></html>", "not a media container"),
    ],
)
def test_files_that_can_never_be_media_are_invalid(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    (tmp_path / name).write_bytes(content)
    verdict = check_file(tmp_path / name)
    assert verdict.state is State.INVALID and reason in verdict.reason


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is not a video, just text " * 10, 'not a media container (starts with the text "this is ")'),
        (
            b"\x7fELF\x02\x01\x01\x00" + bytes(64),
            "not a media container (starts with bytes 7f 45 4c 46 02 01 01 00)",
        ),
        (b"ab\ncd\nef and more lines", "not a media container (starts with bytes 61 62 0a 63 64 0a 65 66)"),
    ],
)
def test_the_start_of_a_file_that_is_not_media_is_said_readably(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """Issue 22 (8): the reason showed a Python bytes repr, `starts with b'this is '`."""
    (tmp_path / "x.mp4").write_bytes(content)
    verdict = check_file(tmp_path / "x.mp4")
    assert verdict.state is State.INVALID and verdict.reason == reason


def test_image_bytes_under_a_video_name_are_invalid(tmp_path: Path) -> None:
    jpeg = write_jpeg(tmp_path / "a.jpg").read_bytes()
    (tmp_path / "clip.mp4").write_bytes(jpeg)
    verdict = check_file(tmp_path / "clip.mp4")
    assert verdict.state is State.INVALID and "jpeg" in verdict.reason and ".mp4" in verdict.reason


def test_a_video_family_under_another_video_name_is_checked_as_what_it_is(tmp_path: Path) -> None:
    """FFmpeg opens by content, so a fragmented MP4 named .ts is media; its own structure decides."""
    data = write_fragmented_mp4(tmp_path / "a.mp4").read_bytes()
    (tmp_path / "cam.ts").write_bytes(data)
    assert check_file(tmp_path / "cam.ts").state is State.WHOLE
    (tmp_path / "cam.ts").write_bytes(data[:-10])
    assert check_file(tmp_path / "cam.ts").state is State.PARTIAL


def test_a_tiny_prefix_is_partial_not_invalid(tmp_path: Path) -> None:
    """The first bytes of an upload cannot tell the format yet: wait, do not fail."""
    (tmp_path / "a.mp4").write_bytes(b"\x00\x00\x00")
    assert check_file(tmp_path / "a.mp4").state is State.PARTIAL
