"""A request's work budget: CPU seconds that may be spent on it, however many threads it runs on.

The bot runs one request's stages as several jobs of its thread pool (a long clip gives up its
turn between windows when others wait), so the time is summed per measured piece of work, each
piece timed on the one thread that ran it (`time.thread_time`), never across a suspension.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Budget:
    """CPU seconds left for one request, and whether its caller wants it to stop.

    cpu_s: what may be spent (None: no limit). should_stop: checked between windows of a long
    clip (the caller is shutting down). Not thread-safe: one piece of work at a time.
    """

    def __init__(
        self, cpu_s: float | None = None, should_stop: Callable[[], bool] | None = None
    ) -> None:
        self.cpu_s = cpu_s
        self.should_stop = should_stop
        self.spent_s = 0.0

    @property
    def exhausted(self) -> bool:
        spent = self.cpu_s is not None and self.spent_s >= self.cpu_s
        return spent or (self.should_stop is not None and self.should_stop())

    @contextmanager
    def charge(self) -> Iterator[None]:
        """Count the CPU time of the work inside (which must not be suspended midway)."""
        started = time.thread_time()
        try:
            yield
        finally:
            self.spent_s += time.thread_time() - started
