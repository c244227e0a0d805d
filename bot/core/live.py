"""One reply, edited in place as a request's states arrive, at the pace a platform allows.

A chat platform lets a bot edit a message about once a second (Telegram; less in groups;
Discord about 5 per 5 s per channel), while a request can produce states faster than that.
`LiveReply` therefore keeps only the latest state: the first is sent at once, later ones at
most once per `min_interval_s`, intermediate ones that were overtaken are dropped, not queued,
and the final state is always delivered. When the platform says "slow down" (`RetryLater`),
it waits as long as asked, then sends whatever is latest by then, up to a total wait per
reply (`max_wait_s`); past that it gives up on progress and tries the final state once more.

Platform-free: the adapter implements `ReplyTarget` and picks the render function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from bot.core.states import State, is_final

logger = logging.getLogger(__name__)

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)

# Consecutive "retry later" answers, and seconds spent waiting on them in all, after which a
# reply stops showing progress (the platform is down, we are banned, or Telegram asked for a
# 300 s flood wait): the request must not wait forever. The final state still gets one try.
MAX_RETRIES = 8
MAX_WAIT_S = 60.0
# A platform error worth retrying (5xx, a dropped connection, a timeout) is retried after
# BACKOFF_BASE_S, doubling up to BACKOFF_MAX_S, with jitter so that many replies hit by one
# outage do not all come back at the same instant; within the same budget as "retry later".
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
# The answer itself waits out a flood wait longer than the budget (sending earlier only earns
# another refusal), up to this long.
FINAL_WAIT_CAP_S = 300.0


class RetryLater(Exception):
    """Raised by a `ReplyTarget` when the platform rate-limits us (HTTP 429)."""

    def __init__(self, after_s: float) -> None:
        super().__init__(f"retry after {after_s:g} s")
        self.after_s = max(0.0, float(after_s))


def never_overtaken() -> bool:
    """For edits that must be sent whatever comes after (the answer)."""
    return False


class Overtaken(Exception):
    """A progress edit was dropped before it was sent: a newer state has come meanwhile."""


class TransientFailure(Exception):
    """Raised by a `ReplyTarget` when the platform failed in a way worth retrying: a 5xx, a
    dropped connection, a response slower than the client's timeout."""


def backoff_s(attempt: int) -> float:
    """How long to wait before retry number `attempt` (0-based) after a transient failure."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)


class ReplyTarget(Protocol[R_contra]):
    """Where a reply goes. `send` posts the first message, `edit` replaces its content.

    Either may raise `RetryLater` or `TransientFailure`. An edit that changes nothing
    ("message is not modified") is the adapter's to treat as success. `overtaken` says, while
    a progress edit waits to be sent, whether a newer state has come; an adapter that paces
    its calls may then drop it by raising `Overtaken` (the answer's edit is never overtaken).
    """

    async def send(self, rendered: R_contra) -> None: ...

    async def edit(self, rendered: R_contra, *, overtaken: Callable[[], bool]) -> None: ...


class LiveReply(Generic[R]):
    """Delivers a stream of states to one `ReplyTarget`; one instance per reply.

    `clock` and `sleep` are injectable so that tests can run the pacing on a fake clock.
    """

    def __init__(
        self,
        target: ReplyTarget[R],
        min_interval_s: float = 1.0,
        *,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.target = target
        self.min_interval_s = max(0.0, min_interval_s)
        self.max_wait_s = max(0.0, max_wait_s)
        self._clock = clock
        self._sleep = sleep
        self._latest: State | None = None
        self._arrived = asyncio.Event()
        self._ended = False
        self._sent = False
        self._shown: R | None = None

    async def run(self, states: AsyncGenerator[State, None], render: Callable[[State], R]) -> None:
        """Consume `states` to the end and show them; returns once the final one is shown.

        Raises what the target raises (other than `RetryLater`) for the final state. After
        `MAX_RETRIES` "retry later" answers in a row, or `max_wait_s` seconds spent waiting on
        them, progress is no longer shown: the final state gets one last try when it arrives,
        and `RetryLater` is raised if that fails too. In every case `states` is closed, so the
        request frees its limits at once.
        """
        pump = asyncio.create_task(self._pump(states))
        try:
            await self._deliver_all(render)
            if pump.done():
                pump.result()  # re-raises an error of the state stream itself
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            elif not pump.cancelled() and pump.exception() is not None:
                # Already raised above, or superseded by the target's error: either way seen.
                logger.debug("state stream failed", exc_info=pump.exception())
            await states.aclose()

    async def _pump(self, states: AsyncGenerator[State, None]) -> None:
        try:
            async for state in states:
                self._latest = state
                self._arrived.set()
        finally:
            self._ended = True
            self._arrived.set()

    async def _deliver_all(self, render: Callable[[State], R]) -> None:
        next_at = self._clock()
        retries = 0
        waited_s = 0.0
        while True:
            while self._latest is None:
                if self._ended:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            if self._sent:
                # Pace edits; states arriving meanwhile replace `_latest`, so the wait also
                # drops the ones overtaken.
                wait_s = next_at - self._clock()
                if wait_s > 0:
                    await self._sleep(wait_s)
            state, self._latest = self._latest, None
            try:
                try:
                    await self._show(state, render)
                except Overtaken:
                    continue  # a newer state is in `_latest`: show that one instead
                except TransientFailure as failure:
                    logger.info("reply delivery failed (%s); retrying", failure)
                    raise RetryLater(backoff_s(retries)) from failure
            except RetryLater as later:
                retries += 1
                if retries > MAX_RETRIES or waited_s + later.after_s > self.max_wait_s:
                    logger.warning(
                        "reply rate-limited %d times (%.0f s waited, %.0f s more asked); "
                        "giving up on progress, the answer gets one more try",
                        retries,
                        waited_s,
                        later.after_s,
                    )
                    await self._last_try(state, render, later)
                    return
                logger.info("reply rate-limited; retrying in %.1f s", later.after_s)
                if self._latest is None:
                    self._latest = state
                await self._sleep(later.after_s)
                waited_s += later.after_s
                next_at = self._clock()
                continue
            except Exception:
                if is_final(state):
                    raise
                # A lost progress edit is not worth failing the request for: the next state
                # will try again.
                logger.warning("progress edit failed; continuing", exc_info=True)
            retries = 0
            next_at = self._clock() + self.min_interval_s
            if is_final(state):
                return

    async def _last_try(
        self, state: State, render: Callable[[State], R], later: RetryLater
    ) -> None:
        """Skip progress to the end of the stream, then show its last state once, at the time
        the platform asked for (at most `FINAL_WAIT_CAP_S` away): sending before a flood wait
        is over only earns another refusal, and the answer must not be lost to it."""
        retry_at = self._clock() + later.after_s
        while not self._ended:
            self._arrived.clear()
            await self._arrived.wait()
        if self._latest is not None:
            state, self._latest = self._latest, None
        wait_s = min(retry_at - self._clock(), FINAL_WAIT_CAP_S)
        if wait_s > 0:
            await self._sleep(wait_s)
        try:
            await self._show(state, render)
        except (RetryLater, TransientFailure):
            logger.warning("reply still rate-limited; the answer was not shown")
            raise

    async def _show(self, state: State, render: Callable[[State], R]) -> None:
        rendered = render(state)
        if not self._sent:
            await self.target.send(rendered)
            self._sent = True
        elif rendered != self._shown:
            await self.target.edit(rendered, overtaken=self._overtaken_unless(is_final(state)))
        self._shown = rendered

    def _overtaken_unless(self, final: bool) -> Callable[[], bool]:
        if final:
            return never_overtaken
        return lambda: self._latest is not None
