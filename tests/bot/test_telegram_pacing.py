"""The Bot API call line: within the flood limits, first replies, refusals and answers go ahead of
progress edits and typing signals, and a waiting call that was overtaken is dropped.

Order only, never timing: the limiter's clock is the test's, frozen while calls line up and moved
on once they all wait, so who is served first is decided by the line alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.adapters.telegram.pacing import PROGRESS, TYPING, URGENT, Pace, PriorityRateLimiter
from bot.core.live import Overtaken

HANG_GUARD_S = 30.0
PRIVATE, GROUP, OTHER_GROUP = 1001, -2002, -3003


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frozen_limiter(**kwargs: Any) -> tuple[PriorityRateLimiter, Clock]:
    clock = Clock()
    return PriorityRateLimiter(clock=clock, **kwargs), clock


class Log:
    def __init__(self) -> None:
        self.served: list[str] = []

    def call(self, name: str) -> Any:
        async def callback() -> bool:
            self.served.append(name)
            return True

        return callback


async def send(
    limiter: PriorityRateLimiter, log: Log, name: str, pace: Pace | None, chat_id: int | None
) -> Any:
    data = {} if chat_id is None else {"chat_id": chat_id}
    return await limiter.process_request(log.call(name), (), {}, "sendMessage", data, pace)


async def spend_the_burst(limiter: PriorityRateLimiter, log: Log, n: int) -> None:
    await asyncio.gather(*(send(limiter, log, f"burst{i}", None, PRIVATE) for i in range(n)))


async def test_urgent_calls_go_ahead_of_progress_and_typing_already_waiting() -> None:
    (limiter, clock), log = frozen_limiter(per_second=20), Log()
    await spend_the_burst(limiter, log, 20)
    async with asyncio.timeout(HANG_GUARD_S):
        waiting = [
            asyncio.create_task(send(limiter, log, f"typing{i}", Pace(TYPING), PRIVATE))
            for i in range(3)
        ] + [
            asyncio.create_task(send(limiter, log, f"edit{i}", Pace(PROGRESS), PRIVATE))
            for i in range(5)
        ]
        await asyncio.sleep(0)
        assert limiter.waiting == 8
        answer = asyncio.create_task(send(limiter, log, "answer", Pace(URGENT), PRIVATE))
        await asyncio.sleep(0)
        clock.now += 60.0  # tokens for everyone, handed out in the line's order
        await asyncio.gather(answer, *waiting)
    after = log.served[20:]
    assert after[0] == "answer"
    assert after[1:6] == [f"edit{i}" for i in range(5)]  # progress in arrival order
    assert after[6:] == [f"typing{i}" for i in range(3)]


async def test_calls_without_rate_limit_args_count_as_urgent() -> None:
    (limiter, clock), log = frozen_limiter(per_second=20), Log()
    await spend_the_burst(limiter, log, 20)
    async with asyncio.timeout(HANG_GUARD_S):
        edit = asyncio.create_task(send(limiter, log, "edit", Pace(PROGRESS), PRIVATE))
        refusal = asyncio.create_task(send(limiter, log, "refusal", None, PRIVATE))
        await asyncio.sleep(0)
        clock.now += 60.0
        await asyncio.gather(refusal, edit)
    assert log.served[20:] == ["refusal", "edit"]


async def test_an_overtaken_call_is_dropped_without_being_sent() -> None:
    (limiter, clock), log = frozen_limiter(per_second=20), Log()
    await spend_the_burst(limiter, log, 20)
    newer = False
    async with asyncio.timeout(HANG_GUARD_S):
        stale = asyncio.create_task(
            send(limiter, log, "stale edit", Pace(PROGRESS, lambda: newer), PRIVATE)
        )
        await asyncio.sleep(0)
        newer = True  # a newer state came while the edit waited for a token
        clock.now += 60.0
        with pytest.raises(Overtaken):
            await stale
        await send(limiter, log, "answer", None, PRIVATE)
    assert "stale edit" not in log.served and log.served[-1] == "answer"


async def test_a_spent_group_does_not_hold_up_other_chats() -> None:
    (limiter, _), log = frozen_limiter(per_second=1000, group_per_minute=2), Log()
    async with asyncio.timeout(HANG_GUARD_S):
        await send(limiter, log, "group1", None, GROUP)
        await send(limiter, log, "group2", None, GROUP)
        third = asyncio.create_task(send(limiter, log, "group3", None, GROUP))
        await asyncio.sleep(0)
        await send(limiter, log, "private", None, PRIVATE)
        await send(limiter, log, "other group", None, OTHER_GROUP)
        assert not third.done()  # this group's minute is spent: 20 a minute by default
        third.cancel()
    assert log.served == ["group1", "group2", "private", "other group"]
    await limiter.shutdown()


async def test_calls_without_a_chat_never_wait() -> None:
    (limiter, _), log = frozen_limiter(per_second=1), Log()
    await spend_the_burst(limiter, log, 1)
    async with asyncio.timeout(HANG_GUARD_S):
        assert await send(limiter, log, "getUpdates", None, None) is True
    assert log.served == ["burst0", "getUpdates"]
