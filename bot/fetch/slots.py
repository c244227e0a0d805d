"""Download slots: a bounded number of fetches at once, one platform never taking them all."""

from __future__ import annotations

import asyncio
import logging

from bot.core.errors import (
    Busy,
)
from bot.fetch.messages import (
    MSG_BUSY,
    busy_message,
)

log = logging.getLogger(__name__)


class FetchSlots:
    """Who may fetch now: at most `size` fetches at once and `per_platform` for any one platform
    (a throttled site must not take every slot), with a bounded wait for a slot. A fetch that
    would wait longer gets `Busy` at once instead of a timeout later.

    `release` must be called once for every successful `acquire`, when the work is really over
    (for yt-dlp: when its thread has finished, not when we stopped waiting for it).
    """

    def __init__(self, size: int, *, per_platform: int, wait_s: float) -> None:
        self.size = max(1, size)
        self.per_platform = max(1, min(per_platform, self.size))
        self.wait_s = wait_s
        self._all = asyncio.Semaphore(self.size)
        self._platforms: dict[str, asyncio.Semaphore] = {}

    async def acquire(self, platform: str, request_id: str = "-") -> None:
        """Take a slot for `platform`, or raise `Busy` once `wait_s` has passed without one."""
        mine = self._platforms.setdefault(platform, asyncio.Semaphore(self.per_platform))
        held: list[asyncio.Semaphore] = []
        try:
            async with asyncio.timeout(self.wait_s):
                # Always the platform's slot first, then the shared one: one order, no deadlock.
                for semaphore in (mine, self._all):
                    await semaphore.acquire()
                    held.append(semaphore)
        except BaseException as error:
            for semaphore in held:
                semaphore.release()
            if isinstance(error, TimeoutError):
                log.info("[%s] no %s fetch slot in %g s", request_id, platform, self.wait_s)
                raise Busy(busy_message(platform) if not held else MSG_BUSY) from None
            raise

    def release(self, platform: str) -> None:
        self._all.release()
        self._platforms[platform].release()
