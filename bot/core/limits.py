"""Who may start a match now: per-user quotas, one request at a time, a bounded global queue.

Three separate limits, because they protect different things:
- per-user token buckets (per minute and per day) keep one person from draining the shared
  capacity (trace.moe's bot added them after exactly that); a refusal says when to come back;
- one request in flight per user, so ten clips sent at once get one answer and one clear
  "one at a time" instead of ten slots in the queue (`RecentRefusals`: a refusal of a kind is
  said once per window, not once per message);
- a global cap on matches running at once, with a FIFO queue of bounded length whose position
  is shown to the user; a full queue refuses at once rather than letting waits grow unbounded.
  A request takes its place in line *before* downloading, and only the first `max_downloads`
  in line download at once: the media held in memory stays under
  (max_downloads + max_concurrent) * max_bytes however many people are waiting. Within that,
  links (other people's servers, which can be slow on purpose) take at most all places but one,
  so an attachment (the platform's own CDN) never waits behind four slow links, and one user
  downloads one thing at a time (an allowlisted user's many requests, a scan beside a request).

Unsolicited requests (a Discord channel scan nobody asked for) cost no quota, are admitted only
when a match slot is free and nobody waits (else `Busy`), are served after every asked-for
request, and never count as the user's one request in flight.

Users on the allowlist skip the first two, never the third: that one protects the machine.
Single event loop, no threads: nothing here locks. Time comes from `clock` (monotonic seconds)
so tests can move it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import LimitSettings
from bot.core.errors import AlreadyWorking, Busy, RateLimited
from bot.core.request import User

DAY_S = 86_400.0
MINUTE_S = 60.0
# Forget users whose buckets are full again once this many are tracked: memory stays bounded
# by the users active in the last day.
_PRUNE_AT = 10_000


@dataclass(frozen=True)
class Quota:
    """Requests a user has left now; `exempt` users (the allowlist) have no limit.

    Used requests come back gradually (token buckets, not a reset at midnight):
    `next_in_s` is how long until the user may ask again (0: now), `full_in_s` how long
    until both windows are full again. `per_minute` / `per_day` are the limits themselves."""

    minute_left: int
    day_left: int
    exempt: bool = False
    per_minute: int = 0
    per_day: int = 0
    next_in_s: float = 0.0
    full_in_s: float = 0.0


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

    def full_in_s(self, now: float) -> float:
        """Seconds until the bucket is full again (0 when it is)."""
        return max(0.0, self.capacity - self.tokens(now)) / self.rate_per_s


# One refusal of a kind per user per this many seconds (see `RecentRefusals`).
REFUSAL_WINDOW_S = 30.0


class Ticket:
    """A request's place from admission to the end of its match.

    `position` is 0 once the ticket holds a match slot (`running`), else its place in line
    (1: next). `may_fetch` says it is near enough the front to download now; after
    `fetched()` it takes the first free match slot.
    """

    def __init__(
        self, limits: Limits, *, unsolicited: bool = False, user: str = "", link: bool = False
    ) -> None:
        self._limits = limits
        self.unsolicited = unsolicited
        self.user = user
        self.link = link
        self.position = 0
        self.may_fetch = False
        self.ready = False
        self.changed = asyncio.Event()
        self.released = False

    @property
    def running(self) -> bool:
        return self.position == 0 and self.ready and not self.released

    async def wait_change(self) -> int:
        """Wait until the position or `may_fetch` changes; returns the position (0: running)."""
        await self.changed.wait()
        self.changed.clear()
        return self.position

    def fetched(self) -> None:
        """The media is in hand: take a match slot as soon as one is free."""
        if not self.ready and not self.released:
            self.ready = True
            self._limits._advance()

    def requeue(self) -> None:
        """Give the match slot to the next request in line and wait at the back of it, media
        in hand (a long clip between two windows, while others wait)."""
        if self.running:
            self._limits._requeue(self)

    def release(self) -> None:
        """Leave the line or free the slot; idempotent, so every exit path may call it."""
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
        # Users with an unsolicited scan running: kept apart so that a scan never makes the
        # same user's explicit request "one at a time".
        self._scanning: set[str] = set()
        self._running: set[Ticket] = set()
        # The line, in the order it is served: asked-for requests first, then scans.
        self._waiting: deque[Ticket] = deque()
        self._waiting_unsolicited: deque[Ticket] = deque()
        self._allow = frozenset(settings.allow_users)
        # An asked-for request has its media in hand and waits for a match slot: a running
        # long clip then gives up its slot between windows. Read from worker threads.
        self.slot_wanted = False

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
        """Requests left now in the minute and day windows (the full quota for exempt users:
        `quota` says whether they are)."""
        if self.exempt(user):
            return self.settings.per_minute, self.settings.per_day
        now = self._clock()
        minute, day = self._buckets.get(user.key) or self._new_buckets(now)
        return int(minute.tokens(now)), int(day.tokens(now))

    def quota(self, user: User) -> Quota:
        """What a user may still ask for and when used requests come back, as /help shows it."""
        settings = self.settings
        if self.exempt(user):
            return Quota(settings.per_minute, settings.per_day, exempt=True)
        now = self._clock()
        buckets = self._buckets.get(user.key) or self._new_buckets(now)
        minute, day = buckets
        return Quota(
            int(minute.tokens(now)),
            int(day.tokens(now)),
            per_minute=settings.per_minute,
            per_day=settings.per_day,
            next_in_s=max(b.retry_after_s(now) for b in buckets),
            full_in_s=max(b.full_in_s(now) for b in buckets),
        )

    def begin(self, user: User, *, unsolicited: bool = False) -> None:
        """Mark the user's request as in flight, or raise `AlreadyWorking`.

        An unsolicited scan is refused while the user has anything in flight, and never
        refuses the user's own explicit request.
        """
        if self.exempt(user):
            return
        if unsolicited:
            if user.key in self._in_flight or user.key in self._scanning:
                raise AlreadyWorking()
            self._scanning.add(user.key)
            return
        if user.key in self._in_flight:
            raise AlreadyWorking()
        self._in_flight.add(user.key)

    def end(self, user: User, *, unsolicited: bool = False) -> None:
        (self._scanning if unsolicited else self._in_flight).discard(user.key)

    def in_flight(self, user: User) -> bool:
        return user.key in self._in_flight or user.key in self._scanning

    # -- global

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting) + len(self._waiting_unsolicited)

    def full(self, *, unsolicited: bool = False) -> bool:
        """Whether `enqueue` would refuse now.

        Asked-for requests fill `max_concurrent + max_queue` places (waiting scans do not
        count: they are served last). A scan is admitted only when a match slot is free and
        nobody waits, so it never queues.
        """
        settings = self.settings
        if unsolicited:
            return self.running + self.waiting >= settings.max_concurrent
        return self.running + len(self._waiting) >= settings.max_concurrent + settings.max_queue

    def enqueue(self, *, unsolicited: bool = False, user: str = "", link: bool = False) -> Ticket:
        """A ticket in line, taken before downloading; raises `Busy` when the line is full.
        `user` (its key) and `link` (a link, not an attachment) decide when it may download.
        The caller must `release()` it."""
        if self.full(unsolicited=unsolicited):
            raise Busy()
        ticket = Ticket(self, unsolicited=unsolicited, user=user, link=link)
        (self._waiting_unsolicited if unsolicited else self._waiting).append(ticket)
        self._advance()
        ticket.changed.clear()  # its first place is news to nobody
        return ticket

    def _leave(self, ticket: Ticket) -> None:
        if ticket in self._running:
            self._running.discard(ticket)
        else:
            (self._waiting_unsolicited if ticket.unsolicited else self._waiting).remove(ticket)
        self._advance()

    def _requeue(self, ticket: Ticket) -> None:
        self._running.discard(ticket)
        (self._waiting_unsolicited if ticket.unsolicited else self._waiting).append(ticket)
        self._advance()

    def _advance(self) -> None:
        """Hand free slots to the first tickets with their media in hand, then tell every
        ticket whose place or download permission changed."""
        free = self.settings.max_concurrent - len(self._running)
        if free > 0:
            for queue in (self._waiting, self._waiting_unsolicited):
                for ticket in [t for t in queue if t.ready][:free]:
                    queue.remove(ticket)
                    self._running.add(ticket)
                    free -= 1
        self.slot_wanted = any(t.ready for t in self._waiting)
        for ticket in self._running:
            self._update(ticket, 0, may_fetch=True)
        line = (*self._waiting, *self._waiting_unsolicited)
        allowed = self._downloads_allowed(line)
        for place, ticket in enumerate(line, start=1):
            self._update(ticket, place, may_fetch=ticket in allowed)

    def _downloads_allowed(self, line: tuple[Ticket, ...]) -> set[Ticket]:
        """The tickets in line that may hold media now, in line order: media in hand counts,
        links fill all places but one, and a user's second download waits for the first."""
        places = self.settings.max_downloads
        link_places = max(places - 1, 1)
        allowed: set[Ticket] = set()
        links, users = 0, set()
        for ticket in line:
            if len(allowed) >= places:
                break
            holding = ticket.ready  # fetched, waiting for a match slot
            busy_user = bool(ticket.user) and ticket.user in users
            if not holding and ((ticket.link and links >= link_places) or busy_user):
                continue
            allowed.add(ticket)
            if not holding:
                links += ticket.link
                users.add(ticket.user)
        return allowed

    @staticmethod
    def _update(ticket: Ticket, position: int, *, may_fetch: bool) -> None:
        if (ticket.position, ticket.may_fetch) != (position, may_fetch):
            ticket.position, ticket.may_fetch = position, may_fetch
            ticket.changed.set()

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


class RecentRefusals:
    """Which refusals each user was given lately: a flood of one user's messages gets one
    refusal of a kind per `window_s`, not one per message."""

    def __init__(
        self, window_s: float = REFUSAL_WINDOW_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._given: dict[tuple[str, str], float] = {}

    def repeat(self, user: User, kind: str) -> bool:
        """Whether `user` was refused for `kind` within the window; notes this refusal if not."""
        now = self._clock()
        key = (user.key, kind)
        given = self._given.get(key)
        if given is not None and now - given < self.window_s:
            return True
        if len(self._given) >= _PRUNE_AT:
            self._given = {k: t for k, t in self._given.items() if now - t < self.window_s}
        self._given[key] = now
        return False
