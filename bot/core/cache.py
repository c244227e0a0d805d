"""Answers remembered for clips people repost: the same video comes back many times a day.

Keys, from cheapest to most certain:
- the link, normalised to (platform, video id), so `vm.tiktok.com` short links aside, every
  spelling of one post (`www.`, `m.`, tracking parameters, `/shorts/` vs `watch?v=`) is one key
  (the second video of a tweet, `/video/2`, is another); links to other sites are kept whole
  (scheme, host, port, path, query), since nothing says two spellings there are one file;
- the media bytes' digest, for attachments and for links that resolve to the same file.

Only final answers from the current index are kept (the index generation is part of the key,
so publishing a new index forgets the old answers); errors are never cached, since most are
transient. A bounded LRU with a time to live: memory stays flat however long the bot runs.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

T = TypeVar("T")

# platform, host pattern, path pattern whose first group is the video id (and whose second, if
# any, picks one video of several in a post).
_VIDEO_IDS: list[tuple[str, re.Pattern[str], re.Pattern[str]]] = [
    (platform, re.compile(host), re.compile(path))
    for platform, host, path in [
        ("tiktok", r"(^|\.)tiktok\.com$", r"/@[^/]+/(?:video|photo)/(\d+)"),
        ("instagram", r"(^|\.)instagram\.com$", r"(?:/[^/]+)?/(?:reels?|p|tv)/([\w-]+)"),
        ("youtube", r"(^|\.)youtube\.com$", r"/(?:shorts|live|embed)/([\w-]{6,})"),
        ("youtube", r"^youtu\.be$", r"/([\w-]{6,})"),
        ("x", r"(^|\.)(x|twitter)\.com$",
         r"/[^/]+(?:/web)?/status(?:es)?/(\d+)(?:/(?:video|photo)/(\d+))?"),
        ("reddit", r"(^|\.)reddit\.com$", r"(?:/r/\w+)?/comments/(\w+)"),
        ("reddit", r"^v\.redd\.it$", r"/(\w+)"),
    ]
]
_YOUTUBE_HOST = re.compile(r"(^|\.)youtube\.com$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def link_key(url: str) -> str:
    """`youtube:dQw4w9WgXcQ` for any spelling of one post of a known platform; for any other
    link, the link itself (scheme, host, port, path and query: two servers, or two files
    told apart by a query, are never one answer)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").rstrip(".").lower()
    known = _known_key(host, parts.path, parts.query)
    if known is not None:
        return known
    try:
        port = parts.port
    except ValueError:  # not a number: keep the link as written
        return f"url:{url.strip()}"
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    return f"url:{scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def _known_key(host: str, path: str, query: str) -> str | None:
    host = host.removeprefix("www.").removeprefix("m.")
    if _YOUTUBE_HOST.search(host) and path.rstrip("/") == "/watch":
        video = parse_qs(query).get("v", [""])[0]
        return f"youtube:{video}" if video else None
    for platform, host_re, path_re in _VIDEO_IDS:
        if host_re.search(host) and (found := path_re.match(path)):
            key = f"{platform}:{found.group(1)}"
            # The first video of a post is the post's own key: yt-dlp fetches that one for
            # the bare link.
            index = found.group(2) if path_re.groups > 1 else None
            return key if index in (None, "1") else f"{key}:{index}"
    return None


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
