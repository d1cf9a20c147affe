"""A corpus of 30 awkward inputs dropped into a running installation at once.

Good files end `done` with one analysis each; broken files end `failed` with a reason; files whose fate
depends on the codec build (8K, 0 fps, odd sizes, deleted while analysed) end in a terminal state, with a
reason when failed; files Vigil must never open (symlinks out of the root, FIFOs, partial uploads, hidden
files, non-media names) get no row. The watcher and the worker are still running at the end.

Honest limits: the tests run as root, so a `chmod 000` file is still readable and is a good file here;
PyAV on this machine writes no rotation matrix, so "rotated" is a portrait clip (36x48 frames).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faults import TERMINAL, Deployment, FaultResult, Report, wait_for
from workers.testing.clips import (
    write_audio_only,
    write_clip_h264,
    write_clip_mp4v,
    write_clip_vfr,
    write_corrupt,
    write_image,
    write_zero_fps_avi,
)

pytestmark = pytest.mark.slow

Maker = Callable[[Path], object]


def mp4v(seconds: float, size: tuple[int, int] = (48, 36), fps: float = 5, salt: str = "") -> Maker:
    def make(path: Path) -> None:
        write_clip_mp4v(path, seconds=seconds, fps=fps, size=size)
        with path.open("ab") as out:
            out.write(f"salt-{salt or path.name}".encode())

    return make


def cut(make: Maker, keep: float) -> Maker:
    def truncated(path: Path) -> None:
        make(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return truncated


def text_as(path: Path) -> None:
    path.write_text("plain text pretending to be media\n" * 10)


GOOD: dict[str, Maker] = {
    "plain.mp4": mp4v(2),
    "h264.mp4": lambda p: write_clip_h264(p, seconds=2, fps=10, size=(64, 48), gop=12, bframes=0),
    "long-gop.mp4": lambda p: write_clip_h264(p, seconds=3, fps=10, size=(64, 48), gop=250, bframes=2),
    "ünïcödé 名前.mp4": mp4v(1),
    "with spaces in name.mp4": mp4v(1),
    "sub dir/nested clip.mp4": mp4v(1),
    "one-frame.mp4": mp4v(0.2),
    "vfr.mp4": lambda p: write_clip_vfr(p),
    "portrait-rotated.mp4": mp4v(1, size=(36, 48)),
    "image.png": lambda p: write_image(p, size=(64, 48)),
    "image.jpg": lambda p: write_image(p, size=(48, 64)),
    "root-can-read-000.mp4": mp4v(1),
}
EITHER: dict[str, Maker] = {
    "8k.mp4": lambda p: write_clip_h264(p, seconds=0.2, fps=10, size=(7680, 4320)),
    "zero-fps.avi": lambda p: write_zero_fps_avi(p),
    "odd-size.mp4": mp4v(1, size=(33, 17)),
    "deleted-mid-analysis.mp4": mp4v(40, salt="deleted"),
}
BAD: dict[str, Maker] = {
    "zero-bytes.mp4": lambda p: write_corrupt(p, "zero_bytes"),
    "text.mp4": lambda p: write_corrupt(p, "text"),
    "truncated.mp4": lambda p: write_corrupt(p, "truncated"),
    "header-only.mp4": lambda p: write_corrupt(p, "header_only"),
    "audio-only.mp4": lambda p: write_audio_only(p),
    "text.png": text_as,
    "random.mkv": lambda p: p.write_bytes(os.urandom(20000)),
    "truncated-h264.mp4": cut(lambda p: write_clip_h264(p, seconds=2, fps=10, size=(64, 48)), 0.5),
    "garbage.jpg": lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(3000)),
}
IGNORED = ["escape.mp4", "pipe.mp4", "upload.mp4.part", ".hidden.mp4", "notes.txt"]


@pytest.fixture
def deployment(tmp_path: Path, tiny_llava: Path) -> Iterator[Deployment]:
    d = Deployment(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
    )
    yield d
    d.stop_all()


def make_ignored(d: Deployment) -> None:
    outside = d.root / "outside-secret.mp4"
    write_clip_mp4v(outside, seconds=1, fps=5, size=(32, 24))
    (d.inbox / "escape.mp4").symlink_to(outside)
    os.mkfifo(d.inbox / "pipe.mp4")
    for name in ("upload.mp4.part", ".hidden.mp4"):  # OpenCV picks the container by suffix: write, rename
        made = d.staging / f"made-{len(name)}.mp4"
        mp4v(1)(made)
        made.rename(d.inbox / name)
    (d.inbox / "notes.txt").write_text("not media")


def test_a_corpus_of_bad_inputs(deployment: Deployment, fault_report: Report) -> None:
    d = deployment
    d.start_all()
    began = time.monotonic()
    for name, make in {**GOOD, **BAD, **EITHER}.items():
        d.drop(name, make)
    os.chmod(d.inbox / "root-can-read-000.mp4", 0)
    make_ignored(d)
    assert len(GOOD) + len(BAD) + len(EITHER) + len(IGNORED) == 30
    victim = d.inbox / "deleted-mid-analysis.mp4"
    # Deleted while it is analysed (or, if it was too quick for us, after: then it is simply done).
    wait_for(
        lambda: d.statuses().get(victim.name) in {"running", *TERMINAL}, what="victim claimed", step=0.05
    )
    victim.unlink()
    every = set(GOOD) | set(BAD) | set(EITHER)
    d.wait_settled(every, timeout=180)
    elapsed = time.monotonic() - began
    lost, dup = d.verdict(set(GOOD), set(BAD))
    statuses = d.statuses()
    errors = dict(d.rows("SELECT rel_path, error FROM media"))
    for name in EITHER:
        assert statuses[name] in TERMINAL
        assert statuses[name] != "failed" or errors[name], name
    assert not set(IGNORED) & statuses.keys(), statuses
    assert d.alive("watcher") and d.alive("gpu")
    fates = ", ".join(f"{n}={statuses[n]}" for n in EITHER)
    fault_report.add(FaultResult("corpus of 30 bad inputs", 30, lost, dup, None, f"{elapsed:.0f} s; {fates}"))
