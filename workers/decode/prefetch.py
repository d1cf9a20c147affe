"""Decode ahead of the model: a media's frame iterator run in a background thread, at most ``depth``
ready items ahead of the consumer.

While the model scores window k, windows k+1 … k+depth are decoded. PyAV (FFmpeg) and numpy release the
GIL while they decode and convert, so a thread overlaps with torch's own threads inside one worker process
(no pickling of frames, no second model). Memory is bounded by a semaphore, not by the queue: the producer
takes a slot before it asks the decoder for the next item and the consumer gives the slot back when it
takes the item, so decoded-but-not-consumed items never exceed ``depth`` (``max_ready`` records the most
seen); with the consumer's current item that is at most ``depth + 1`` windows of frames alive.

Errors: whatever the iterator raises (``UnreadableMedia`` from ``workers.decode.frames``, a ``ValueError``
of a bad plan) is handed over in order and re-raised in the consumer when it asks for the item that failed:
the same exception object, so the same type and message as without prefetching, after every item decoded
before it.

Stopping: ``close`` (and leaving the ``with`` block, normally or by an exception) tells the producer to stop,
wakes it, waits for it to finish the item it is decoding and closes the iterator in the producer's thread.
Only then may the caller close the file: a PyAV container must not be closed under a running decode.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
THREAD_NAME = "vigil-prefetch"  # tests count live threads by this name


class _End:
    """The queue's last item: the iterator ended, or raised ``error``."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead; use it as an iterator in
    a ``with`` block (or call ``close``)."""

    def __init__(self, items: Iterator[T], *, depth: int) -> None:
        if depth < 1:
            raise ValueError("prefetch depth must be >= 1")
        self.depth = depth
        self.busy_ms = 0.0  # the producer's time inside the iterator (the decoder's own busy time)
        self.wait_ms = 0.0  # the consumer's time waiting for items (time the model stood idle)
        self.ready = 0  # items decoded and not yet taken
        self.max_ready = 0
        self._items = items
        self._slots = threading.Semaphore(depth)
        self._queue: queue.SimpleQueue[T | _End] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ended = False
        self._thread = threading.Thread(target=self._produce, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                self._slots.acquire()
                if self._stop.is_set():
                    return
                began = time.perf_counter()
                try:
                    item = next(self._items)
                except StopIteration:
                    return
                finally:
                    self.busy_ms += (time.perf_counter() - began) * 1000
                with self._lock:
                    self.ready += 1
                    self.max_ready = max(self.max_ready, self.ready)
                self._queue.put(item)
        except BaseException as exc:  # handed to the consumer, raised there
            error = exc
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:  # a generator's cleanup runs in the thread that ran it
                try:
                    close()
                except Exception:  # an error while cleaning up must not hide the first one
                    log.exception("closing the prefetched iterator failed")
            self._queue.put(_End(error))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._ended:
            raise StopIteration
        began = time.perf_counter()
        item = self._queue.get()
        self.wait_ms += (time.perf_counter() - began) * 1000
        if isinstance(item, _End):
            self._ended = True
            self._thread.join()
            if item.error is not None:
                raise item.error
            raise StopIteration
        with self._lock:
            self.ready -= 1
        self._slots.release()
        return item

    def close(self) -> None:
        """Stop the producer and wait for it (it finishes the item it is decoding, then closes the
        iterator). Safe to call more than once."""
        self._stop.set()
        self._slots.release()  # wake a producer waiting for a slot
        self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineStream(Generic[T]):
    """The same interface without a thread: each item decoded when asked for (``prefetch_windows = 0``);
    the wait and the decoder's busy time are then one and the same."""

    depth = 0

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self.wait_ms = 0.0
        self.max_ready = 0

    @property
    def busy_ms(self) -> float:
        return self.wait_ms

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        began = time.perf_counter()
        try:
            return next(self._items)
        finally:
            self.wait_ms += (time.perf_counter() - began) * 1000

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> InlineStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_stream(items: Iterator[T], *, depth: int) -> Prefetcher[T] | InlineStream[T]:
    """``items`` decoded up to ``depth`` ahead in a thread, or in line when ``depth`` is 0."""
    return Prefetcher(items, depth=depth) if depth > 0 else InlineStream(items)


# Python's GIL hand-over interval while the decoder thread runs beside the model (default 5 ms). The decoder
# takes and gives back the GIL around every packet and frame; each time the model thread holds it in
# Python code (a transformers forward is many small Python calls) the decoder waited up to 5 ms. Measured
# with bench/throughput_overlap.py at load ~15: the model waited 1,730 ms for frames with 5 ms and 784 ms
# with 0.5 ms, the overlap speedup 1.39 against 1.52.
GIL_SWITCH_INTERVAL_S = 0.0005


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (a container's or `taskset`'s share), not every
    core of the host as ``os.cpu_count`` counts them (64 threads on a 2-core share spin on each other)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def model_threads(cores: int | None, *, configured: int = 0) -> int:
    """Torch intra-op threads for a worker: ``model.threads`` when set, else every usable core, the decoder
    thread beside the model included.

    At the published sizes the decoder needs under 1 % of a window's time, so giving it a core of its own
    starves the model. Measured with SmolVLM2-500M (fp32, random weights) through ``WindowRecognizer`` on a
    30 s 1280x720 camera-like clip, 8 targets, decoding ahead, on the 2-core machine at load ~2: 0.273
    footage s per s with 1 torch thread (the earlier rule, every core but one), 0.395 with 2 (1.45x); the
    model waited 0.2-0.3 s in all for frames. The earlier rule came from a tiny model at load ~15, whose
    cost is all overhead."""
    return configured or cores or 1
