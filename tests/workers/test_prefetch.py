"""Decoding ahead of the model: same frames and results as in line, bounded memory, errors surfacing in
the consumer as they did, and no decoder thread left behind after success, error or an early stop."""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vigil.config.settings import ModelSettings
from vigil.errors import UnreadableMedia
from vigil.formats.probe import probe
from vigil.ops.contracts import TargetSpec
from workers.decode.frames import FrameRequest, open_media
from workers.decode.prefetch import THREAD_NAME, InlineStream, Prefetcher, frame_stream, model_threads
from workers.testing.clips import write_clip_h264, write_clip_mpeg4


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


class Tracked:
    """An iterator of numbered items that counts the items alive: made and not yet released."""

    def __init__(self, count: int, *, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.alive = self.max_alive = 0
        self.closed = False
        self._lock = threading.Lock()
        self._gen = self._items()

    def _items(self) -> Iterator[int]:
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise UnreadableMedia("clip.mp4", f"FFmpeg: broken at item {i}")
                time.sleep(0.002)
                with self._lock:
                    self.alive += 1
                    self.max_alive = max(self.max_alive, self.alive)
                yield i
        finally:
            self.closed = True

    def release(self) -> None:
        with self._lock:
            self.alive -= 1

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_items_come_in_order_and_never_more_than_depth_wait(depth: int) -> None:
    source = Tracked(30)
    got = []
    with Prefetcher(source, depth=depth) as stream:
        for item in stream:
            time.sleep(0.005)  # a consumer slower than the producer: the bound is what stops it
            got.append(item)
            source.release()
    assert got == list(range(30))
    assert stream.max_ready == depth  # reached (slow consumer) and never exceeded
    assert source.max_alive <= depth + 1  # the ready ones plus the one being consumed
    assert not prefetch_threads()


def test_an_error_surfaces_in_the_consumer_after_the_items_before_it() -> None:
    source = Tracked(10, fail_at=3)
    got: list[int] = []
    with (
        pytest.raises(UnreadableMedia, match="broken at item 3") as raised,
        Prefetcher(source, depth=2) as stream,
    ):
        for item in stream:
            got.append(item)
    assert got == [0, 1, 2]
    assert str(raised.value) == "clip.mp4: FFmpeg: broken at item 3"
    assert source.closed and not prefetch_threads()


def test_an_early_stop_ends_the_thread_and_closes_the_iterator() -> None:
    source = Tracked(1000)
    with Prefetcher(source, depth=3) as stream:
        assert next(stream) == 0
    assert source.closed and not stream.alive and not prefetch_threads()
    assert source.max_alive <= 4  # it stopped after at most the bounded read-ahead


def test_a_consumer_error_also_ends_the_thread() -> None:
    source = Tracked(1000)
    with pytest.raises(RuntimeError, match="model failed"), Prefetcher(source, depth=2) as stream:
        next(stream)
        raise RuntimeError("model failed")
    assert source.closed and not prefetch_threads()


def test_depth_zero_decodes_in_line() -> None:
    stream = frame_stream(iter(range(3)), depth=0)
    assert isinstance(stream, InlineStream) and list(stream) == [0, 1, 2]
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(iter(()), depth=-1)


def test_the_prefetched_frames_equal_the_in_line_ones(tmp_path: Path) -> None:
    clip = write_clip_h264(tmp_path / "c.mp4", seconds=4, fps=10, size=(160, 96), gop=20)
    requests = [FrameRequest(4, start_s=s, end_s=s + 1, max_side=64, full_side=128) for s in range(4)]
    with open_media(clip) as media, frame_stream(media.frames(requests), depth=0) as inline:
        expected = [(i, f.rgb.copy(), f.full, f.timestamps_s) for i, f in inline]
    with open_media(clip) as media, frame_stream(media.frames(requests), depth=2) as ahead:
        got = [(i, f.rgb, f.full, f.timestamps_s) for i, f in ahead]
    assert [g[0] for g in got] == [e[0] for e in expected] == [0, 1, 2, 3]
    for (_, rgb, full, stamps), (_, rgb0, full0, stamps0) in zip(got, expected, strict=True):
        assert np.array_equal(rgb, rgb0) and np.array_equal(full, full0) and stamps == stamps0
    assert ahead.busy_ms > 0 and not prefetch_threads()


def test_real_windows_alive_stay_within_the_bound(tmp_path: Path) -> None:
    clip = write_clip_h264(tmp_path / "c.mp4", seconds=10, fps=10, size=(160, 96), gop=20)
    requests = [FrameRequest(4, start_s=s, end_s=s + 1, max_side=64, full_side=160) for s in range(10)]
    made: list[weakref.ref[object]] = []  # every Frames the decoder made; alive while someone holds it

    def tracked(items: Iterator[tuple[int, object]]) -> Iterator[tuple[int, object]]:
        for index, frames in items:
            made.append(weakref.ref(frames))
            yield index, frames

    most = 0
    with open_media(clip) as media, Prefetcher(tracked(media.frames(requests)), depth=2) as stream:
        for _, frames in stream:
            time.sleep(0.05)  # the model is slower: the decoder would run far ahead without the bound
            gc.collect()
            most = max(most, sum(ref() is not None for ref in made))
            del frames
    assert stream.max_ready == 2
    assert len(made) == 10 and most <= 3  # two ready, one being scored


def test_torch_takes_every_core_unless_model_threads_is_set() -> None:
    assert model_threads(2) == 2
    assert model_threads(16) == 16
    assert model_threads(None) == 1
    assert model_threads(16, configured=3) == 3


def headless_clip(tmp_path: Path) -> Path:
    """A clip of workers/testing/clips.py cut right after its index: it opens, and no frame decodes."""
    whole = write_clip_mpeg4(tmp_path / "whole.mp4", seconds=2, fps=15, faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.find(b"mdat") + 8])
    return cut


@pytest.fixture
def recognizer_for(loaded_models, tmp_path: Path):
    from workers.analysis.pipeline import WindowRecognizer

    def make(**model: object) -> WindowRecognizer:
        settings = ModelSettings(
            frames_per_window=4, window_s=1.0, evidence=True, evidence_max_tokens=4, **model
        )
        return WindowRecognizer(
            loaded_models("llava_next_video"), settings, thumbnails_dir=tmp_path / "thumbs"
        )

    return make


TARGETS = [TargetSpec(1, "person", "a person walking", 0.5), TargetSpec(2, "van", "a white van", 1.0)]


def rows(recognition) -> list[tuple]:
    return [
        (r.target_id, r.window_index, r.start_s, r.p_yes, r.matched, r.evidence) for r in recognition.results
    ]


def test_recognition_with_prefetch_equals_in_line(recognizer_for, tmp_path: Path) -> None:
    clip = write_clip_h264(tmp_path / "c.mp4", seconds=5, fps=10, size=(160, 96), gop=20)
    info = probe(clip)
    inline = recognizer_for(prefetch_windows=0).recognize(clip, info, TARGETS, media_id=1)
    ahead = recognizer_for(prefetch_windows=2).recognize(clip, info, TARGETS, media_id=2)
    assert inline.windows == ahead.windows == 5
    assert rows(ahead) == rows(inline)
    assert ahead.frames_decoded == inline.frames_decoded
    assert ahead.params["prefetch_windows"] == 2 and float(ahead.params["decode_busy_ms"]) > 0  # type: ignore[arg-type]
    assert not prefetch_threads()


@pytest.mark.parametrize("depth", [0, 2])
def test_an_unreadable_clip_fails_the_same_way_and_leaves_no_thread(
    recognizer_for, tmp_path: Path, depth: int
) -> None:
    clip = headless_clip(tmp_path)
    with pytest.raises(UnreadableMedia) as raised:
        recognizer_for(prefetch_windows=depth).recognize(clip, probe(clip), TARGETS, media_id=1)
    assert str(raised.value) == f"{clip}: no decodable frame"
    assert not prefetch_threads()


def test_the_worker_applies_the_rule_when_it_loads_its_model(tiny_llava: Path, tmp_path: Path) -> None:
    import sys

    import torch

    from vigil.config.settings import Settings
    from workers.analysis.runtime import WorkerRuntime
    from workers.decode.prefetch import GIL_SWITCH_INTERVAL_S

    before = torch.get_num_threads(), sys.getswitchinterval()
    settings = Settings(
        database={"url": f"sqlite:///{tmp_path / 'v.db'}"},
        broker={"url": f"sqla+sqlite:///{tmp_path / 'broker.db'}"},
        model={"id": str(tiny_llava), "device": "cpu", "prefetch_windows": 2},
        storage={"data_dir": tmp_path / "data"},
    )
    try:
        WorkerRuntime(settings).recognizer()
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
        one = settings.model_copy(update={"model": settings.model.model_copy(update={"threads": 1})})
        WorkerRuntime(one).recognizer()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        sys.setswitchinterval(before[1])
