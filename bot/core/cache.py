"""Answers remembered for clips people repost: the same video comes back many times a day.

Keys, from cheapest to most certain:
- the link, normalised by `bot.links.link_key` (every spelling of one post is one key);
- the media bytes' digest (`media_key`), for attachments and for links that resolve to the
  same file.

Only final answers from the current index are kept (the index generation is part of the key,
so publishing a new index forgets the old answers); errors are never cached, since most are
transient. A bounded LRU with a time to live: memory stays flat however long the bot runs.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def media_key(data: bytes) -> str:
    """Digest of the media bytes: the same file sent again, by anyone, anywhere."""
    return "media:" + hashlib.blake2b(data, digest_size=16).hexdigest()


class AnswerCache(Generic[T]):
    """A bounded LRU of answers with a time to live, keyed per index generation."""

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        ttl_s: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self.hits = 0
        self.misses = 0

    def get(self, key: str, *, generation: str) -> T | None:
        full = f"{generation}|{key}"
        entry = self._entries.get(full)
        if entry is None or self._clock() - entry[0] > self._ttl_s:
            self._entries.pop(full, None)
            self.misses += 1
            return None
        self._entries.move_to_end(full)
        self.hits += 1
        return entry[1]

    def put(self, keys: list[str], answer: T, *, generation: str) -> None:
        now = self._clock()
        for key in keys:
            full = f"{generation}|{key}"
            self._entries[full] = (now, answer)
            self._entries.move_to_end(full)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
