"""Who may start a match now: per-user quotas, one request at a time, a bounded global queue.

Three separate limits, because they protect different things:
- per-user token buckets (per minute and per day) keep one person from draining the shared
  capacity (trace.moe's bot added them after exactly that); a refusal says when to come back;
- one request in flight per user, so ten clips sent at once get ten clear answers ("one at a
  time") instead of ten slots in the queue;
- a global cap on matches running at once, with a FIFO queue of bounded length whose position
  is shown to the user; a full queue refuses at once rather than letting waits grow unbounded.

Users on the allowlist skip the first two, never the third: that one protects the machine.
Single event loop, no threads: nothing here locks. Time comes from `clock` (monotonic seconds)
so tests can move it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from bot.config import LimitSettings
from bot.errors import AlreadyWorking, Busy, RateLimited
from bot.request import User

DAY_S = 86_400.0
MINUTE_S = 60.0
# Forget users whose buckets are full again once this many are tracked: memory stays bounded
# by the users active in the last day.
_PRUNE_AT = 10_000


class TokenBucket:
    """`capacity` tokens, refilled continuously at `capacity / period_s` per second."""

    def __init__(self, capacity: int, period_s: float, *, now: float) -> None:
        self.capacity = capacity
        self.rate_per_s = capacity / period_s
        self._tokens = float(capacity)
        self._updated = now

    def tokens(self, now: float) -> float:
        elapsed = max(0.0, now - self._updated)
        return min(float(self.capacity), self._tokens + elapsed * self.rate_per_s)

    def retry_after_s(self, now: float) -> float:
        """Seconds until one token is available (0 when one is)."""
        missing = 1.0 - self.tokens(now)
        return 0.0 if missing <= 0 else missing / self.rate_per_s

    def take(self, now: float) -> None:
        self._tokens = self.tokens(now) - 1.0
        self._updated = now

    def full(self, now: float) -> bool:
        return self.tokens(now) >= self.capacity


class Ticket:
    """A place in the global match queue. `position` is 0 once running, else 1 for next."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self.position = 0
        self.changed = asyncio.Event()
        self.released = False

    @property
    def running(self) -> bool:
        return self.position == 0 and not self.released

    async def wait_change(self) -> int:
        """Wait until the position changes; returns the new one (0: running)."""
        await self.changed.wait()
        self.changed.clear()
        return self.position

    def release(self) -> None:
        """Leave the queue or free the slot; idempotent, so every exit path may call it."""
        if not self.released:
            self.released = True
            self._limits._leave(self)


class Limits:
    def __init__(
        self, settings: LimitSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}
        self._in_flight: set[str] = set()
        self._running: set[Ticket] = set()
        self._waiting: deque[Ticket] = deque()
        self._allow = frozenset(settings.allow_users)

    # -- per user

    def exempt(self, user: User) -> bool:
        return user.key in self._allow

    def check(self, user: User) -> None:
        """Spend one request from the user's quota, or raise `RateLimited(retry_after_s)`."""
        if self.exempt(user):
            return
        now = self._clock()
        buckets = self._user_buckets(user.key, now)
        wait_s = max(b.retry_after_s(now) for b in buckets)
        if wait_s > 0:
            raise RateLimited(wait_s)
        for bucket in buckets:
            bucket.take(now)

    def remaining(self, user: User) -> tuple[int, int]:
        """Requests left now in the minute and day windows (for /help)."""
        if self.exempt(user):
            return self.settings.per_minute, self.settings.per_day
        now = self._clock()
        minute, day = self._buckets.get(user.key) or self._new_buckets(now)
        return int(minute.tokens(now)), int(day.tokens(now))

    def begin(self, user: User) -> None:
        """Mark the user's request as in flight, or raise `AlreadyWorking`."""
        if self.exempt(user):
            return
        if user.key in self._in_flight:
            raise AlreadyWorking()
        self._in_flight.add(user.key)

    def end(self, user: User) -> None:
        self._in_flight.discard(user.key)

    def in_flight(self, user: User) -> bool:
        return user.key in self._in_flight

    # -- global

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def full(self) -> bool:
        """Whether a new match would be refused now (checked before fetching, to fail fast)."""
        settings = self.settings
        return len(self._running) >= settings.max_concurrent and (
            len(self._waiting) >= settings.max_queue
        )

    def enqueue(self) -> Ticket:
        """A ticket that is running at once or waiting in line; raises `Busy` when the line is
        full. The caller must `release()` it."""
        if self.full():
            raise Busy()
        ticket = Ticket(self)
        if len(self._running) < self.settings.max_concurrent:
            self._running.add(ticket)
        else:
            self._waiting.append(ticket)
            ticket.position = len(self._waiting)
        return ticket

    def _leave(self, ticket: Ticket) -> None:
        if ticket in self._running:
            self._running.discard(ticket)
        else:
            self._waiting.remove(ticket)
        while self._waiting and len(self._running) < self.settings.max_concurrent:
            self._running.add(self._waiting.popleft())
        for other in self._running:
            if other.position != 0:
                other.position = 0
                other.changed.set()
        for position, other in enumerate(self._waiting, start=1):
            if other.position != position:
                other.position = position
                other.changed.set()

    # -- buckets

    def _new_buckets(self, now: float) -> tuple[TokenBucket, TokenBucket]:
        return (
            TokenBucket(self.settings.per_minute, MINUTE_S, now=now),
            TokenBucket(self.settings.per_day, DAY_S, now=now),
        )

    def _user_buckets(self, key: str, now: float) -> tuple[TokenBucket, TokenBucket]:
        buckets = self._buckets.get(key)
        if buckets is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            buckets = self._buckets[key] = self._new_buckets(now)
        return buckets

    def _prune(self, now: float) -> None:
        for key in [k for k, bs in self._buckets.items() if all(b.full(now) for b in bs)]:
            del self._buckets[key]
