"""Limits on a fake clock: quotas, one at a time, the global queue, the allowlist."""

from __future__ import annotations

import pytest

from bot.config import LimitSettings
from bot.errors import AlreadyWorking, Busy, RateLimited
from bot.limits import Limits, TokenBucket
from bot.request import User

ALICE = User("telegram", "1", "alice")
BOB = User("discord", "2", "bob")


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def limits(clock: Clock | None = None, **settings: object) -> Limits:
    return Limits(LimitSettings(**settings), clock=clock or Clock())  # type: ignore[arg-type]


def test_a_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(2, 60.0, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.retry_after_s(0.0) == pytest.approx(30.0)
    assert bucket.retry_after_s(30.0) == 0.0
    assert bucket.tokens(10_000.0) == 2  # never above capacity


def test_the_minute_quota_says_when_to_come_back() -> None:
    clock = Clock()
    lim = limits(clock, per_minute=2, per_day=100)
    lim.check(ALICE)
    lim.check(ALICE)
    with pytest.raises(RateLimited) as refused:
        lim.check(ALICE)
    assert refused.value.retry_after_s == pytest.approx(30.0)
    assert "try again in 30 s" in refused.value.message
    lim.check(BOB)  # quotas are per user
    clock.now += 30.0
    lim.check(ALICE)


def test_a_refused_request_does_not_spend_the_quota() -> None:
    clock = Clock()
    lim = limits(clock, per_minute=1)
    lim.check(ALICE)
    for _ in range(5):
        with pytest.raises(RateLimited):
            lim.check(ALICE)
    clock.now += 60.0
    lim.check(ALICE)


def test_the_day_quota_speaks_in_hours() -> None:
    lim = limits(per_minute=100, per_day=3)
    for _ in range(3):
        lim.check(ALICE)
    with pytest.raises(RateLimited) as refused:
        lim.check(ALICE)
    assert refused.value.retry_after_s == pytest.approx(86_400 / 3)
    assert "try again in 8 h" in refused.value.message


def test_remaining_counts_down() -> None:
    lim = limits(per_minute=5, per_day=100)
    assert lim.remaining(ALICE) == (5, 100)
    lim.check(ALICE)
    lim.check(ALICE)
    assert lim.remaining(ALICE) == (3, 98)


def test_one_request_at_a_time_per_user() -> None:
    lim = limits()
    lim.begin(ALICE)
    with pytest.raises(AlreadyWorking) as refused:
        lim.begin(ALICE)
    assert "one at a time" in refused.value.message
    lim.begin(BOB)
    lim.end(ALICE)
    lim.begin(ALICE)


def test_the_allowlist_skips_per_user_limits() -> None:
    lim = limits(per_minute=1, per_day=1, allow_users=("telegram:1",))
    for _ in range(10):
        lim.check(ALICE)
        lim.begin(ALICE)
    assert lim.remaining(ALICE) == (1, 1)
    lim.check(BOB)
    with pytest.raises(RateLimited):
        lim.check(BOB)


async def test_the_queue_reports_positions_and_refuses_when_full() -> None:
    lim = limits(max_concurrent=1, max_queue=2)
    running = lim.enqueue()
    second, third = lim.enqueue(), lim.enqueue()
    assert (running.running, second.position, third.position) == (True, 1, 2)
    assert lim.full()
    with pytest.raises(Busy):
        lim.enqueue()
    running.release()
    assert second.running and second.changed.is_set()
    assert await third.wait_change() == 1
    assert not lim.full()


async def test_leaving_the_queue_moves_the_others_up() -> None:
    lim = limits(max_concurrent=1, max_queue=3)
    running = lim.enqueue()
    waiting = [lim.enqueue() for _ in range(3)]
    waiting[0].release()
    assert [t.position for t in waiting[1:]] == [1, 2]
    waiting[0].release()  # twice is harmless
    assert lim.running == 1 and lim.waiting == 2
    running.release()
    assert waiting[1].running and waiting[2].position == 1


def test_concurrency_without_waiting() -> None:
    lim = limits(max_concurrent=2, max_queue=0)
    a, b = lim.enqueue(), lim.enqueue()
    assert a.running and b.running
    with pytest.raises(Busy):
        lim.enqueue()
    a.release()
    assert lim.enqueue().running
