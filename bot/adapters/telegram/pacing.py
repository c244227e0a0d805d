"""Pacing Bot API calls within Telegram's flood limits, most important first.

Telegram allows about 30 messages a second in all and 20 a minute in one group. PTB's
`AIORateLimiter` serves calls in arrival order, so under load a user's first reply, a refusal or
an answer waited behind every progress edit and typing signal queued before it (6-35 s at five
requests a second). Here every call that counts against the limits waits in one line ordered by
`Pace.priority`, then by arrival: first replies, refusals and answers (`URGENT`) go ahead of
progress edits (`PROGRESS`), which go ahead of typing signals (`TYPING`). A waiting call whose
`overtaken()` turns true (a newer state will replace that progress edit, a typing signal is too
late to matter) is dropped with `Overtaken` instead of being sent.

Calls without a chat (getUpdates, getFile, getMe) are not counted and never wait. Flood waits
(429) are not retried here: `bot.core.live.LiveReply` waits them out for the reply.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram.ext import BaseRateLimiter

from bot.core.live import Overtaken

URGENT, PROGRESS, TYPING = 0, 1, 2
# Telegram's published limits: messages per second overall, per minute in one group.
PER_SECOND = 30
GROUP_PER_MINUTE = 20
_MINUTE_S = 60.0
# Group buckets untouched this long are full again and can be forgotten.
_FORGET_AFTER_S = 2 * _MINUTE_S


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Pace:
    """How a call waits: its priority, and when it is no longer worth sending."""

    priority: int = URGENT
    overtaken: Callable[[], bool] = field(default=_never, compare=False)


class _Bucket:
    """A token bucket: `capacity` calls at once, refilled at `capacity / period_s` a second."""

    def __init__(self, capacity: float, period_s: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / period_s
        self.tokens = capacity
        self.at = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait_s(self) -> float:
        """Seconds until a token is there (after `refill`)."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    chat: Any = field(compare=False)
    group: int | str | None = field(compare=False)
    pace: Pace = field(compare=False)
    turn: asyncio.Future[None] = field(compare=False)


class PriorityRateLimiter(BaseRateLimiter[Pace]):
    """One line for every counted call, served by priority within the flood limits."""

    def __init__(
        self,
        *,
        per_second: float = PER_SECOND,
        group_per_minute: float = GROUP_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._per_second = per_second
        self._group_per_minute = group_per_minute
        self._overall = _Bucket(per_second, 1.0, clock())
        self._groups: dict[int | str, _Bucket] = {}
        self._line: list[_Waiter] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self._line:
            waiter.turn.cancel()
        self._line.clear()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Pace | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = data.get("chat_id")
        if chat_id is not None:
            await self._wait_turn(rate_limit_args or Pace(), chat_id)
        return await callback(*args, **kwargs)

    @property
    def waiting(self) -> int:
        return len(self._line)

    def waiting_chats(self) -> set[Any]:
        """The chats with a call in line."""
        return {waiter.chat for waiter in self._line}

    async def _wait_turn(self, pace: Pace, chat: Any) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(pace.priority, next(self._seq), chat, _group_of(chat), pace, turn)
        bisect.insort(self._line, waiter)
        self._dispatch()
        await turn

    def _dispatch(self) -> None:
        """Give every token there is to the first waiters that can use one; set a timer for
        when the next one can go."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        self._overall.refill(now)
        self._forget_groups(now)
        next_in_s: float | None = None
        for waiter in list(self._line):
            if waiter.turn.done():  # cancelled by its caller
                self._line.remove(waiter)
            elif waiter.pace.overtaken():
                self._line.remove(waiter)
                waiter.turn.set_exception(Overtaken())
            elif self._overall.tokens < 1.0:
                next_in_s = self._overall.wait_s()
                break
            elif (bucket := self._group_bucket(waiter.group, now)) and bucket.tokens < 1.0:
                # This group is spent; later calls to other chats may still go.
                wait_s = bucket.wait_s()
                next_in_s = wait_s if next_in_s is None else min(next_in_s, wait_s)
            else:
                self._overall.tokens -= 1.0
                if bucket is not None:
                    bucket.tokens -= 1.0
                self._line.remove(waiter)
                waiter.turn.set_result(None)
        if self._line:
            # Waiters that may be overtaken are checked again soon even when tokens are short.
            delay = 0.05 if next_in_s is None else max(next_in_s, 0.005)
            self._timer = asyncio.get_running_loop().call_later(delay, self._dispatch)

    def _group_bucket(self, group: int | str | None, now: float) -> _Bucket | None:
        if group is None or self._group_per_minute <= 0:
            return None
        bucket = self._groups.get(group)
        if bucket is None:
            bucket = self._groups[group] = _Bucket(self._group_per_minute, _MINUTE_S, now)
        bucket.refill(now)
        return bucket

    def _forget_groups(self, now: float) -> None:
        if len(self._groups) > 512:
            self._groups = {g: b for g, b in self._groups.items() if now - b.at < _FORGET_AFTER_S}


def _group_of(chat_id: Any) -> int | str | None:
    """Groups and channels (negative ids, @names) have a per-minute limit; private chats not."""
    try:
        number = int(chat_id)
    except (TypeError, ValueError):
        return str(chat_id)
    return number if number < 0 else None
