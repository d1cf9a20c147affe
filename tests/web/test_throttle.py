"""The login throttle's arithmetic, on an injected clock: locks double, never pass `MAX_LOCK_S`, and a
quiet address starts afresh (the HTTP side is in test_attacks.py)."""

from __future__ import annotations

from vigil.web.login import FORGET_S, FREE_FAILURES, MAX_LOCK_S, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_locks_double_are_bounded_and_forgotten() -> None:
    clock = Clock()
    throttle = Throttle(clock)
    for _ in range(FREE_FAILURES):
        throttle.failed("addr:a")
        assert throttle.wait_s("addr:a") == 0
    locks = []
    for _ in range(20):  # an attacker who waits out every lock
        throttle.failed("addr:a")
        locks.append(throttle.wait_s("addr:a"))
        clock.now += locks[-1]
    assert locks[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(locks) == MAX_LOCK_S and locks[-1] == MAX_LOCK_S
    assert throttle.wait_s("addr:b") == 0  # another address is not affected
    throttle.failed("addr:a")
    clock.now += FORGET_S + 1  # quiet long enough: the count starts again
    throttle.failed("addr:a")
    assert throttle.wait_s("addr:a") == 0
    throttle.succeeded("addr:a")
    assert throttle.wait_s("addr:a") == 0
