"""Limits on a fake clock: quotas, one at a time, the global queue, the allowlist."""

from __future__ import annotations

import pytest

from bot.config import LimitSettings
from bot.core.errors import AlreadyWorking, Busy, RateLimited
from bot.core.limits import Limits, RecentRefusals, Ticket, TokenBucket
from bot.core.request import User

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


def running(lim: Limits, *, unsolicited: bool = False) -> Ticket:
    """A ticket that took its place, downloaded, and holds a match slot."""
    ticket = lim.enqueue(unsolicited=unsolicited)
    ticket.fetched()
    assert ticket.running
    return ticket


async def test_the_queue_reports_positions_and_refuses_when_full() -> None:
    lim = limits(max_concurrent=1, max_queue=2)
    first = running(lim)
    second, third = lim.enqueue(), lim.enqueue()
    assert (second.position, third.position) == (1, 2)
    assert lim.full()
    with pytest.raises(Busy):
        lim.enqueue()
    second.fetched()
    assert not second.running  # the media is in hand, but the slot is not free
    first.release()
    assert second.running and second.changed.is_set()
    assert await third.wait_change() == 1
    assert not lim.full()


async def test_leaving_the_queue_moves_the_others_up() -> None:
    lim = limits(max_concurrent=1, max_queue=3)
    first = running(lim)
    waiting = [lim.enqueue() for _ in range(3)]
    waiting[0].release()
    assert [t.position for t in waiting[1:]] == [1, 2]
    waiting[0].release()  # twice is harmless
    assert lim.running == 1 and lim.waiting == 2
    first.release()
    assert lim.running == 0  # nobody has their media yet: the slot waits for the first who does
    waiting[2].fetched()
    assert waiting[2].running and waiting[1].position == 1


def test_concurrency_without_waiting() -> None:
    lim = limits(max_concurrent=2, max_queue=0)
    a = running(lim)
    b = lim.enqueue()  # downloading: it already counts, so a third is refused before fetching
    with pytest.raises(Busy):
        lim.enqueue()
    a.release()
    b.fetched()
    assert b.running and running(lim).running


def test_only_the_front_of_the_line_downloads() -> None:
    lim = limits(max_concurrent=1, max_queue=10, max_downloads=2)
    tickets = [lim.enqueue() for _ in range(5)]
    assert [t.may_fetch for t in tickets] == [True, True, False, False, False]
    assert [t.position for t in tickets] == [1, 2, 3, 4, 5]
    # The first to have its media runs; its place in the download window goes to the next.
    tickets[1].fetched()
    assert tickets[1].running and tickets[2].may_fetch and not tickets[3].may_fetch
    # A finished download waiting for the slot keeps its place in the window: what is held in
    # memory stays bounded by max_downloads + max_concurrent.
    tickets[0].fetched()
    assert not tickets[0].running and tickets[0].may_fetch
    assert [t.may_fetch for t in tickets[2:]] == [True, False, False]
    tickets[2].release()
    assert tickets[3].may_fetch and tickets[3].changed.is_set() and not tickets[4].may_fetch


def test_an_unsolicited_scan_runs_only_when_nobody_waits() -> None:
    lim = limits(max_concurrent=2, max_queue=5)
    scan = lim.enqueue(unsolicited=True)
    scan.fetched()
    assert scan.running
    asked = running(lim)
    # Both slots busy: another scan is refused rather than queued; an asked request queues.
    with pytest.raises(Busy):
        lim.enqueue(unsolicited=True)
    waiting = lim.enqueue()
    assert waiting.position == 1
    asked.release()
    waiting.fetched()
    assert waiting.running
    with pytest.raises(Busy):
        lim.enqueue(unsolicited=True)  # still no free slot


def test_asked_requests_overtake_waiting_scans() -> None:
    lim = limits(max_concurrent=1, max_queue=5)
    scan = lim.enqueue(unsolicited=True)  # admitted while idle, still downloading
    asked = running(lim)
    later = lim.enqueue()
    assert later.position == 1 and scan.position == 2  # served after every asked request
    scan.fetched()
    later.fetched()
    asked.release()
    assert later.running and not scan.running
    later.release()
    assert scan.running


def test_waiting_scans_never_fill_the_queue_for_asked_requests() -> None:
    lim = limits(max_concurrent=1, max_queue=1)
    scan = lim.enqueue(unsolicited=True)
    asked = [lim.enqueue(), lim.enqueue()]  # one to run, one to wait: the scan takes no place
    assert [t.position for t in asked] == [1, 2] and scan.position == 3
    with pytest.raises(Busy):
        lim.enqueue()


def test_a_scan_never_blocks_its_posters_own_request() -> None:
    lim = limits()
    lim.begin(ALICE, unsolicited=True)
    lim.begin(ALICE)  # asked while the scan of their post runs: not "one at a time"
    with pytest.raises(AlreadyWorking):
        lim.begin(ALICE, unsolicited=True)  # one scan at a time, and none while asking
    lim.end(ALICE, unsolicited=True)
    with pytest.raises(AlreadyWorking):
        lim.begin(ALICE, unsolicited=True)
    lim.end(ALICE)
    assert not lim.in_flight(ALICE)
    lim.begin(ALICE, unsolicited=True)
    assert lim.in_flight(ALICE)


def test_attachments_never_wait_behind_a_line_of_links() -> None:
    """Four slow links cannot take every download place: one is kept for attachments."""
    lim = limits(max_concurrent=1, max_queue=10, max_downloads=4)
    links = [lim.enqueue(user=f"telegram:{i}", link=True) for i in range(4)]
    attachment = lim.enqueue(user="telegram:9")
    assert [t.may_fetch for t in links] == [True, True, True, False]
    assert attachment.may_fetch
    # A link's media in hand frees its connection: the fourth link may start.
    links[0].fetched()
    assert links[3].may_fetch


def test_one_user_downloads_one_thing_at_a_time() -> None:
    lim = limits(max_concurrent=1, max_queue=10, max_downloads=4)
    first, second = lim.enqueue(user="telegram:1"), lim.enqueue(user="telegram:1")
    other = lim.enqueue(user="telegram:2")
    assert (first.may_fetch, second.may_fetch, other.may_fetch) == (True, False, True)
    first.fetched()  # running now; its download is over
    assert second.may_fetch


def test_a_refusal_is_said_once_per_window() -> None:
    now = [0.0]
    refusals = RecentRefusals(30.0, clock=lambda: now[0])
    alice, bob = User("telegram", "1", "alice"), User("telegram", "2", "bob")
    assert not refusals.repeat(alice, "already_working")
    assert refusals.repeat(alice, "already_working")
    assert not refusals.repeat(alice, "rate_limited")  # another kind is news
    assert not refusals.repeat(bob, "already_working")  # another user too
    now[0] = 31.0
    assert not refusals.repeat(alice, "already_working")  # the window is over
