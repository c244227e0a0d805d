"""The minimum transfer rate: a download that has run past its grace period while averaging
less than the minimum since it started is dropped, so a link that trickles a byte a second
cannot hold a download slot for the whole fetch timeout.

Arithmetic on bytes and seconds only; the callers (direct.py, ytdlp.py) own the clocks. It must
never judge a transfer inside its grace period: a short file that completes by then is never
too slow, and a slow start that recovers in time is never held against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import FetchSettings


@dataclass(frozen=True)
class MinRate:
    bytes_per_s: float
    grace_s: float

    @classmethod
    def from_settings(cls, settings: FetchSettings) -> MinRate:
        return cls(bytes_per_s=settings.min_rate_bytes_per_s, grace_s=settings.min_rate_grace_s)

    def too_slow(self, done_bytes: int, elapsed_s: float) -> bool:
        """Whether `done_bytes` received `elapsed_s` after the start is below the minimum."""
        return elapsed_s > self.grace_s and done_bytes < self.bytes_per_s * elapsed_s

    def deadline_s(self, done_bytes: int) -> float:
        """Seconds after the start by which more than `done_bytes` must have arrived: from then
        on, with no new bytes, the average since the start is below the minimum."""
        return max(self.grace_s, done_bytes / self.bytes_per_s)
