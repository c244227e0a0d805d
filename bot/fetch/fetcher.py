"""Fetch stage: turns a chat link or attachment into media bytes, capped and checked.

Links to the supported sites (TikTok, Instagram, YouTube, X/Twitter, Reddit) go to yt-dlp, used
as a library in a small thread pool of its own; links straight to a media file go to aiohttp.
Attachments are read through the adapter's `read()` after their declared size is checked.

This module must never: open a link from a site it does not support, connect to an address the
network guard refuses (every host and redirect hop is checked, at connect time), hold more than
`max_bytes` of a download, let a download run past `timeout_s`, leave yt-dlp's temporary files
behind, or show a user yt-dlp's or aiohttp's own error text (that goes to the log, with the
request id). Nor may it queue without bound: a fetch waits at most `queue_wait_s` for a free slot
(then the user is told we are busy), one platform never takes every slot, and the `timeout_s`
clock starts only once the fetch has its slot, so a queue never shows up as a slow site.

Proxies: none, ever. yt-dlp would otherwise take HTTP(S)_PROXY from the environment, and through a
proxy the guard only sees the proxy's address while the proxy reaches private ones for us.
aiohttp is told not to read the environment either.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.util
import io
import ipaddress
import logging
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yt_dlp
import yt_dlp.networking.exceptions as ytdlp_net
import yt_dlp.utils as ytdlp_utils
from aiohttp.abc import AbstractResolver
from yarl import URL

from bot.config import FetchSettings
from bot.core.errors import (
    BlockedAddress,
    Busy,
    FetchFailed,
    NotMedia,
    PrivatePost,
    TooLarge,
    TooLong,
    UnsupportedSite,
    UserFacingError,
)
from bot.core.request import Attachment, Link
from bot.fetch.netguard import (
    BLOCKED_MESSAGE,
    AddressPolicy,
    ConnectGuard,
    ThreadGuard,
    guard_thread,
)
from bot.links import (
    MAX_LINKS_PER_MESSAGE,
    ParsedLink,
    Platform,
    classify_link,
    find_links,
    has_media_suffix,
    parse_link,
    platform_of_host,
)

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_CHUNK_BYTES = 1 << 16
# Enough of the start of a download to tell a web page or an image from media.
_SNIFF_BYTES = 512
# How long a fetch may wait for a free slot before the user is told we are busy. Short: a person
# is watching, and "try again in a minute" beats a spinner that ends in a timeout.
QUEUE_WAIT_S = 10.0

# ---- messages: one sentence each, never the library's own text ------------------------------

MSG_UNSUPPORTED = (
    "I can't open links from that site; send a TikTok, Instagram, YouTube, X or Reddit link, "
    "or the video itself."
)
MSG_NOT_A_POST = "That link doesn't point to a single video; send the link to the post itself."
MSG_BAD_LINK = "That doesn't look like a link I can open."
MSG_PRIVATE = "That post is private, removed, or needs a login, so I can't open it."
MSG_GEO = "That video isn't available in the country I'm in."
MSG_NO_VIDEO = "I couldn't find a video in that post."
MSG_WEB_PAGE = "That link is a web page, not a video."
MSG_IMAGE_LINK = "That link is an image, not a video."
MSG_TEXT_FILE = "That file is a document, not a video or audio file."
MSG_IMAGE_FILE = "That file is an image, not a video; I need something with sound."
MSG_EMPTY = "That file is empty."
MSG_LIVE = "That's a live stream; send me a clip instead."
MSG_UNREACHABLE = "I couldn't reach that site; try again in a minute."
MSG_SITE_REFUSED = "That site wouldn't let me download the video just now; try again later."
MSG_BROKEN_OFF = "The download broke off before it finished; try again in a minute."
MSG_SERVER_ERROR = "The site didn't hand over the video; try again in a minute."
MSG_NOT_FOUND = "There's nothing at that link any more; it may have been removed."
MSG_LOGIN = "That file needs a login, so I can't open it."
MSG_TOO_MANY_REDIRECTS = "That link redirects too many times, so I gave up."
MSG_BUSY = "All my download slots are busy right now; try again in a minute."
MSG_CLOSING = "I'm restarting right now; try again in a minute."

_PLATFORM_NAMES: dict[str, str] = {
    "tiktok": "TikTok",
    "instagram": "Instagram",
    "youtube": "YouTube",
    "x": "X",
    "reddit": "Reddit",
    "direct": "video file",
}


def _busy_message(platform: str) -> str:
    name = _PLATFORM_NAMES.get(platform, platform)
    return f"I'm already downloading as many {name} links as I can; try again in a minute."


def _too_large_message(max_bytes: int) -> str:
    return f"That video is bigger than the {_megabytes(max_bytes)} I can take."


def _too_long_message(duration_s: float, max_duration_s: float) -> str:
    return (
        f"That video is {_clock(duration_s)} long; I can only take videos up to "
        f"{_clock(max_duration_s)}."
    )


def _timeout_message(timeout_s: float) -> str:
    return f"Downloading that took longer than {timeout_s:g} seconds, so I stopped."


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1_000_000:g} MB"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# ---- content sniffing -----------------------------------------------------------------------

_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP; checked after the media signatures, which never start with it
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"\x00\x00\x01\x00",  # ICO
)
_DOCUMENT_MAGIC = (b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"#EXTM3U")
_MP4_ATOMS = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def _looks_like_media(head: bytes) -> bool:
    # mp4, mov, m4a, 3gp: a box size (big-endian, so a small first byte; text never starts
    # with a control character) then the box type.
    if head[4:8] in _MP4_ATOMS and head[0] < 0x09:
        return True
    if head[:4] == b"RIFF":
        return head[8:12] in (b"WAVE", b"AVI ")
    if head.startswith((b"\x1a\x45\xdf\xa3", b"OggS", b"ID3", b"fLaC", b"FLV", b"#!AMR")):
        return True
    if head.startswith((b"caff", b"\x30\x26\xb2\x75", b"\x00\x00\x01\xba")):  # CAF, ASF, MPEG-PS
        return True
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio, ADTS AAC
        return True
    return head[:1] == head[188:189] == b"\x47"  # MPEG-TS: a sync byte every 188 bytes


def _looks_like_text(head: bytes) -> bool:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<", b"{", b"[")):  # HTML, XML, SVG, JSON
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut at the end of the sample is still text.
        if error.start < len(head) - 3:
            return False
        text = head[: error.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def sniff(head: bytes, *, from_link: bool) -> None:
    """Refuse what is clearly not media (web pages, text, images); let ffmpeg judge the rest.

    `head` is the start of the content. Unknown binary formats pass: the decoder gives its own
    clear error, and refusing them here would turn away containers we did not list.
    """
    if not head:
        raise NotMedia(MSG_EMPTY)
    if _looks_like_media(head):
        return
    if (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head.startswith(_IMAGE_MAGIC):
        raise NotMedia(MSG_IMAGE_LINK if from_link else MSG_IMAGE_FILE)
    if head.startswith(_DOCUMENT_MAGIC) or _looks_like_text(head):
        raise NotMedia(MSG_WEB_PAGE if from_link else MSG_TEXT_FILE)


# ---- the fetcher ----------------------------------------------------------------------------


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
                raise Busy(_busy_message(platform) if not held else MSG_BUSY) from None
            raise

    def release(self, platform: str) -> None:
        self._all.release()
        self._platforms[platform].release()


_ALLOWED_REQUEST_HANDLERS = frozenset({"Urllib", "Requests"})


class _GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """YoutubeDL restricted to the request handlers whose connections the guard can see: urllib
    and requests connect with Python sockets in the calling thread. curl_cffi (impersonation)
    connects inside libcurl, invisible to the audit hook, and websockets reads on a thread of its
    own; both are left out even when installed (impersonating extractors fall back to urllib)."""

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        allowed = [h for h in handlers if getattr(h, "RH_KEY", None) in _ALLOWED_REQUEST_HANDLERS]
        return super().build_request_director(allowed, preferences)


@functools.cache
def _check_request_handlers() -> None:
    """Fail closed, once per process, if yt-dlp stopped building its request director through
    the method we narrow (a yt-dlp upgrade could silently bring curl_cffi back)."""
    if importlib.util.find_spec("curl_cffi") is not None:
        log.info("curl_cffi is installed; yt-dlp is kept from using it (the guard cannot see it)")
    try:
        with _GuardedYoutubeDL({"quiet": True, "logger": _YtdlpLogger("startup")}) as ydl:
            keys = set(ydl._request_director.handlers)
    except Exception as error:  # an API change: refuse to run unguarded
        keys = {f"<unknown: {error!r}>"}
    if not keys or not keys <= _ALLOWED_REQUEST_HANDLERS:
        message = (
            f"yt-dlp would use request handlers {sorted(keys)}; only "
            f"{sorted(_ALLOWED_REQUEST_HANDLERS)} are visible to the network guard. "
            "Refusing to fetch links until bot/fetch.py is updated for this yt-dlp version."
        )
        log.error("%s", message)
        raise RuntimeError(message)


class Fetcher:
    """Fetches what a request points at, within the configured caps.

    Owns a thread pool for yt-dlp (separate from the matcher's, so slow sites cannot starve
    matching) and the slots that bound it and the direct downloads; call `close()` on shutdown.
    `queue_wait_s` and `resolver` (what resolves a platform's host before yt-dlp is started)
    are for tests; production uses the defaults.
    """

    def __init__(
        self,
        settings: FetchSettings,
        *,
        temp_dir: Path | None = None,
        queue_wait_s: float = QUEUE_WAIT_S,
        resolver: AbstractResolver | None = None,
    ) -> None:
        _check_request_handlers()
        self.settings = settings
        self.policy = AddressPolicy.from_cidrs(settings.allow_networks)
        self._extra_hosts = tuple(settings.extra_hosts)
        # Where yt-dlp's per-job temporary directories go (system default when None).
        self._temp_dir = temp_dir
        self._jobs: set[_YtdlpJob] = set()
        workers = max(1, settings.fetch_workers)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="citywok-fetch"
        )
        self._ytdlp_slots = FetchSlots(workers, per_platform=workers - 1, wait_s=queue_wait_s)
        # Direct downloads use no thread, but each holds a socket and up to max_bytes.
        self._direct_slots = FetchSlots(workers, per_platform=workers, wait_s=queue_wait_s)
        self._resolver = resolver
        self._closed = False

    def classify(self, url: str) -> Platform | None:
        return classify_link(url, extra_hosts=self._extra_hosts)

    def find_links(self, text: str, *, limit: int = MAX_LINKS_PER_MESSAGE) -> list[str]:
        return find_links(text, limit=limit, extra_hosts=self._extra_hosts)

    async def close(self) -> None:
        """Stop the yt-dlp pool: queued jobs are dropped, running ones told to stop, and we wait
        (off the loop) until they have, so their sockets and temporary files are gone."""
        self._closed = True
        for job in list(self._jobs):
            job.guard.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, functools.partial(self._executor.shutdown, wait=True, cancel_futures=True)
        )

    async def fetch(self, source: Link | Attachment, *, request_id: str = "-") -> bytes:
        """The media bytes `source` points at (at most `max_bytes`); raises UserFacingError."""
        if self._closed:
            raise Busy(MSG_CLOSING)
        if isinstance(source, Attachment):
            return await self._fetch_attachment(source, request_id)
        return await self._fetch_link(source.url, request_id)

    # -- attachments

    async def _fetch_attachment(self, attachment: Attachment, request_id: str) -> bytes:
        max_bytes = self.settings.max_bytes
        if attachment.size_bytes is not None and attachment.size_bytes > max_bytes:
            log.info(
                "[%s] attachment %r refused: %d bytes",
                request_id,
                attachment.filename,
                attachment.size_bytes,
            )
            raise TooLarge(_too_large_message(max_bytes))
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                data = await attachment.read()
        except TimeoutError:
            raise FetchFailed(_timeout_message(self.settings.timeout_s)) from None
        except (aiohttp.ClientError, OSError) as error:
            # The adapter's download from the chat platform broke; its text stays in the log.
            log.info("[%s] reading the attachment failed: %r", request_id, error)
            raise FetchFailed(MSG_BROKEN_OFF) from None
        # The declared size may be missing or wrong.
        if len(data) > max_bytes:
            raise TooLarge(_too_large_message(max_bytes))
        sniff(data[:_SNIFF_BYTES], from_link=False)
        return data

    # -- links

    async def _fetch_link(self, url: str, request_id: str) -> bytes:
        link = parse_link(url)
        if link is None:
            raise UnsupportedSite(MSG_BAD_LINK)
        platform = classify_link(link.url, extra_hosts=self._extra_hosts)
        if platform is None:
            known = platform_of_host(link.host) is not None
            log.info("[%s] refused link to %s (%s)", request_id, link.host, link.path)
            raise UnsupportedSite(MSG_NOT_A_POST if known else MSG_UNSUPPORTED)
        log.info("[%s] fetching %s link %s", request_id, platform, link.url)
        if platform == "direct" and has_media_suffix(link.path):
            return await self._fetch_direct(link.url, request_id)
        return await self._fetch_ytdlp(link, platform, request_id)

    async def _fetch_direct(self, url: str, request_id: str) -> bytes:
        await self._direct_slots.acquire("direct", request_id)
        guard = ConnectGuard(self.policy)
        try:
            # The clock starts now that the download has its slot.
            async with asyncio.timeout(self.settings.timeout_s):
                return await _download_direct(url, guard, self.settings.max_bytes, request_id)
        except TimeoutError:
            log.info("[%s] download timed out after %g s", request_id, self.settings.timeout_s)
            raise FetchFailed(_timeout_message(self.settings.timeout_s)) from None
        except aiohttp.ClientError as error:
            raise _map_aiohttp_error(error, guard, request_id) from None
        except ValueError as error:  # yarl/idna on a host name aiohttp cannot encode
            log.info("[%s] unusable URL: %r", request_id, error)
            raise UnsupportedSite(MSG_BAD_LINK) from None
        finally:
            self._direct_slots.release("direct")

    async def _fetch_ytdlp(self, link: ParsedLink, platform: Platform, request_id: str) -> bytes:
        await self._ytdlp_slots.acquire(platform, request_id)
        job = _YtdlpJob(
            url=link.url,
            platform=platform,
            settings=self.settings,
            guard=ThreadGuard(self.policy),
            request_id=request_id,
            temp_dir=self._temp_dir,
        )
        submitted = False
        try:
            # The clock starts once the job has its worker: waiting in line is not the site's
            # fault. Resolving the host counts, since a dead resolver is the site's problem.
            async with asyncio.timeout(self.settings.timeout_s):
                # Fail fast, with a clear reason, on a host that is private already; the audit
                # hook then checks every connection yt-dlp makes, redirects and CDNs included.
                await _check_host(link.host, link.port, self.policy, self._resolver, request_id)
                running = self._submit(job, platform)
                submitted = True
                return await asyncio.wrap_future(running)
        except TimeoutError:
            # The thread cannot be killed; the flag stops it at its next read or connection.
            job.guard.cancel()
            log.info("[%s] yt-dlp timed out after %g s", request_id, self.settings.timeout_s)
            raise FetchFailed(_timeout_message(self.settings.timeout_s)) from None
        except asyncio.CancelledError:
            job.guard.cancel()
            raise
        finally:
            if not submitted:
                self._ytdlp_slots.release(platform)

    def _submit(self, job: _YtdlpJob, platform: Platform) -> concurrent.futures.Future[bytes]:
        """Start `job` on a worker; its slot is given back when the thread is done with it, so
        a job abandoned after a timeout still counts until it has really stopped."""
        loop = asyncio.get_running_loop()

        def finished(_: concurrent.futures.Future[bytes]) -> None:
            self._jobs.discard(job)
            self._ytdlp_slots.release(platform)

        def finished_threadsafe(future: concurrent.futures.Future[bytes]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to release for
                loop.call_soon_threadsafe(finished, future)

        try:
            running = self._executor.submit(job.run)
        except RuntimeError:  # shut down by close()
            raise Busy(MSG_CLOSING) from None
        self._jobs.add(job)
        running.add_done_callback(finished_threadsafe)
        return running


async def _check_host(
    host: str,
    port: int,
    policy: AddressPolicy,
    resolver: AbstractResolver | None,
    request_id: str,
) -> None:
    """Resolve `host` and refuse it if any of its addresses is refused by `policy`."""
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        # aiohttp's threaded resolver (the system's getaddrinfo) binds to the running loop, so
        # it is made here rather than when the Fetcher is built, possibly outside any loop.
        resolver = resolver or aiohttp.ThreadedResolver()
        try:
            results = await resolver.resolve(host, port, family=socket.AF_UNSPEC)
        except OSError as error:
            log.info("[%s] cannot resolve %s: %s", request_id, host, error)
            raise FetchFailed(MSG_UNREACHABLE) from None
        except ValueError as error:  # UnicodeError: a label IDNA cannot encode
            log.info("[%s] unusable host name %r: %s", request_id, host, error)
            raise UnsupportedSite(MSG_BAD_LINK) from None
        addresses = sorted({str(result["host"]) for result in results})
    for address in addresses:
        if not policy.allows(address):
            log.warning("[%s] refused %s: resolves to %s", request_id, host, address)
            raise BlockedAddress(BLOCKED_MESSAGE)


# ---- direct downloads with aiohttp ----------------------------------------------------------


def _check_hop(url: URL, guard: ConnectGuard, request_id: str) -> None:
    """Refuse a hop that is not plain http(s) or names a refused IP literal."""
    if url.scheme not in ("http", "https") or not url.host or url.user or url.password:
        log.info("[%s] refused redirect to %s", request_id, url)
        raise UnsupportedSite(MSG_BAD_LINK)
    try:
        address = ipaddress.ip_address(url.host)
    except ValueError:
        return
    if not guard.policy.allows(address):
        log.warning("[%s] refused hop to %s", request_id, url)
        raise BlockedAddress(BLOCKED_MESSAGE)


async def _download_direct(url: str, guard: ConnectGuard, max_bytes: int, request_id: str) -> bytes:
    connector = aiohttp.TCPConnector(
        resolver=guard.resolver, socket_factory=guard.socket_factory, use_dns_cache=False
    )
    headers = {
        "User-Agent": "CityWokBot/1.0 (+which episode is this clip from)",
        # Media does not compress; asking for none keeps the byte count what we store.
        "Accept-Encoding": "identity",
    }
    # trust_env=False: no proxy from the environment (the guard would only see the proxy).
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, trust_env=False
    ) as session:
        current = URL(url)
        for _hop in range(MAX_REDIRECTS + 1):
            _check_hop(current, guard, request_id)
            async with session.get(current, allow_redirects=False) as response:
                location = _redirect_target(response)
                if location is None:
                    return await _read_capped(response, max_bytes, request_id)
                log.info("[%s] %d redirect to %s", request_id, response.status, location)
                current = location
    raise FetchFailed(MSG_TOO_MANY_REDIRECTS)


def _redirect_target(response: aiohttp.ClientResponse) -> URL | None:
    if response.status not in (301, 302, 303, 307, 308):
        return None
    location = response.headers.get("Location")
    if not location:
        raise FetchFailed(MSG_SERVER_ERROR)
    try:
        return response.url.join(URL(location))
    except ValueError:
        raise UnsupportedSite(MSG_BAD_LINK) from None


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int, request_id: str) -> bytes:
    if response.status >= 400:
        log.info("[%s] HTTP %d from %s", request_id, response.status, response.url)
        raise _http_status_error(response.status)
    if response.content_length is not None and response.content_length > max_bytes:
        log.info("[%s] Content-Length %d over the cap", request_id, response.content_length)
        raise TooLarge(_too_large_message(max_bytes))
    # BytesIO, not bytearray: getvalue() hands over its buffer without copying it, where
    # bytes(bytearray) would hold a second copy of up to max_bytes for a moment.
    data = io.BytesIO()
    head = b""
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        if data.tell() + len(chunk) > max_bytes:
            log.info("[%s] stream passed the %d byte cap", request_id, max_bytes)
            raise TooLarge(_too_large_message(max_bytes))
        data.write(chunk)
        if len(head) < _SNIFF_BYTES:
            head += chunk[: _SNIFF_BYTES - len(head)]
            if len(head) == _SNIFF_BYTES:
                # Refuse a web page after its first chunk instead of downloading all of it.
                sniff(head, from_link=True)
    if len(head) < _SNIFF_BYTES:
        sniff(head, from_link=True)
    return data.getvalue()


def _http_status_error(status: int) -> UserFacingError:
    if status in (401, 403, 407):
        return PrivatePost(MSG_LOGIN)
    if status in (404, 410, 451):
        return FetchFailed(MSG_NOT_FOUND)
    return FetchFailed(MSG_SERVER_ERROR)


def _map_aiohttp_error(
    error: aiohttp.ClientError, guard: ConnectGuard, request_id: str
) -> UserFacingError:
    if guard.refused:
        log.warning("[%s] refused connection to %s", request_id, ", ".join(guard.refused))
        return BlockedAddress(BLOCKED_MESSAGE)
    log.info("[%s] download failed: %r", request_id, error)
    if isinstance(error, aiohttp.InvalidURL):
        return UnsupportedSite(MSG_BAD_LINK)
    if isinstance(error, aiohttp.ClientConnectorError):
        return FetchFailed(MSG_UNREACHABLE)
    return FetchFailed(MSG_BROKEN_OFF)


# ---- yt-dlp ---------------------------------------------------------------------------------

# Extractors allowed per platform: never the generic one for platform links (it would follow
# arbitrary embeds), except for Reddit, whose short links (v.redd.it, redd.it, /s/) only the
# generic extractor resolves, by following the redirect to the post.
_EXTRACTORS: dict[Platform, list[str]] = {
    "tiktok": ["TikTok", "TikTokVM"],
    "instagram": ["Instagram"],
    "youtube": ["Youtube", "YoutubeYtBe", "YoutubeLivestreamEmbed"],
    "x": ["Twitter", "TwitterCard", "TwitterBroadcast"],
    "reddit": ["Reddit", "Generic"],
    "direct": ["Generic"],
}
# Substrings of yt-dlp error text, lower-cased, that mean "you may not see this post".
_SITE_REFUSED_MARKERS = (
    "not a bot",
    "ip address is blocked",
    "ip address is unable",
    "unable to solve js challenge",
    "guest token",
    "is processing",
)
_PRIVATE_MARKERS = (
    "authentication",
    "not authorized",
    "quarantined",
    "unreachable",
    "login",
    "log in",
    "sign in",
    "private",
    "cookies",
    "age-restricted",
    "age restricted",
    "confirm your age",
    "members only",
    "members-only",
    "not available",
    "unavailable",
    "removed",
    "deleted",
    "does not exist",
    "no longer",
    "rate-limit",
    "suspended",
    "protected",
)
_NO_VIDEO_MARKERS = (
    "no video",
    "no media",
    "does not contain",
    "not a video",
    "no formats",
    "requested format",
)


class _Stop(Exception):
    """Raised inside a yt-dlp job (from a hook) to end it with a user-facing error."""

    def __init__(self, error: UserFacingError) -> None:
        super().__init__(error.message)
        self.error = error


class _YtdlpLogger:
    """Sends yt-dlp's output to our log, tagged with the request id, never to stdout."""

    def __init__(self, request_id: str) -> None:
        self._prefix = f"[{request_id}] yt-dlp: "

    def debug(self, message: str) -> None:
        log.debug("%s%s", self._prefix, message)

    def info(self, message: str) -> None:
        log.debug("%s%s", self._prefix, message)

    def warning(self, message: str) -> None:
        log.info("%s%s", self._prefix, message)

    def error(self, message: str) -> None:
        log.info("%s%s", self._prefix, message)


@dataclass(eq=False)  # compared and hashed by identity: Fetcher keeps a set of running jobs
class _YtdlpJob:
    """One yt-dlp download, run on a worker thread with a fresh YoutubeDL."""

    url: str
    platform: Platform
    settings: FetchSettings
    guard: ThreadGuard
    request_id: str
    temp_dir: Path | None
    refusal: UserFacingError | None = field(default=None, init=False)

    def run(self) -> bytes:
        with (
            guard_thread(self.guard),
            tempfile.TemporaryDirectory(prefix="citywok-ytdlp-", dir=self.temp_dir) as tmp,
        ):
            try:
                with _GuardedYoutubeDL(self._options(Path(tmp))) as ydl:
                    ydl.extract_info(self.url, download=True)
            except _Stop as stop:
                raise stop.error from None
            except ytdlp_utils.YoutubeDLError as error:
                raise self._map_error(error) from None
            except OSError as error:
                # A socket error yt-dlp did not wrap (our own refusal or shutdown included).
                raise self._map_os_error(error) from None
            if self.refusal is not None:
                raise self.refusal
            return self._read_result(Path(tmp))

    def _options(self, tmp: Path) -> dict[str, Any]:
        max_bytes = self.settings.max_bytes
        fits = f"[filesize<?{max_bytes}][filesize_approx<?{max_bytes}]"
        # RTMP, RTSP and MMS formats would be handed to ffmpeg or rtmpdump, outside the guard.
        native = "[protocol!*=rtmp][protocol!^=rtsp][protocol!^=mms]"
        return {
            # Audio is all we need; prefer formats known to fit, then any single format.
            "format": f"bestaudio{native}{fits}/best{native}{fits}/bestaudio{native}/best{native}",
            "noplaylist": True,
            "playlist_items": "1",
            "max_filesize": max_bytes,
            "socket_timeout": min(self.settings.timeout_s, 20),
            # Never a proxy: without this yt-dlp takes HTTP(S)_PROXY from the environment, and
            # the guard would then check only the proxy's address, not the site's.
            "proxy": "",
            "outtmpl": {"default": str(tmp / "media.%(ext)s")},
            "paths": {"home": str(tmp), "temp": str(tmp)},
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": _YtdlpLogger(self.request_id),
            "progress_hooks": [self._progress],
            "match_filter": self._match_filter,
            "allowed_extractors": _EXTRACTORS[self.platform],
            "cachedir": False,
            "color": {"stdout": "never", "stderr": "never"},
            # Everything stays in this thread, where the connect guard sees it: no ffmpeg or
            # other external downloader, no post-processing, one format (never "a+b", whose
            # parallel download starts threads) fetched one fragment at a time.
            "external_downloader": {"default": "native"},
            "hls_prefer_native": True,
            "postprocessors": [],
            "fixup": "never",
            "retries": 1,
            "fragment_retries": 1,
            "extractor_retries": 1,
            "file_access_retries": 0,
            "concurrent_fragment_downloads": 1,
            "writesubtitles": False,
            "writethumbnail": False,
            "updatetime": False,
        }

    def _match_filter(self, info: dict[str, Any], *, incomplete: bool = False) -> str | None:
        """Refuse live streams and long videos before anything is downloaded."""
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            self.refusal = TooLong(MSG_LIVE)
        else:
            duration_s = info.get("duration")
            max_s = self.settings.max_duration_s
            if isinstance(duration_s, int | float) and duration_s > max_s:
                self.refusal = TooLong(_too_long_message(duration_s, max_s))
        if self.refusal is None:
            return None
        log.info("[%s] refused before download: %s", self.request_id, self.refusal.message)
        return self.refusal.message

    def _progress(self, status: dict[str, Any]) -> None:
        """Stop a download the moment it passes the byte cap, or once the fetch timed out."""
        if self.guard.cancelled.is_set():
            raise _Stop(FetchFailed(_timeout_message(self.settings.timeout_s)))
        done = status.get("downloaded_bytes") or 0
        total = status.get("total_bytes") or 0
        if max(done, total) > self.settings.max_bytes:
            log.info("[%s] yt-dlp download passed the cap (%d/%d)", self.request_id, done, total)
            raise _Stop(TooLarge(_too_large_message(self.settings.max_bytes)))

    def _read_result(self, tmp: Path) -> bytes:
        files = [p for p in tmp.iterdir() if p.is_file() and not p.name.endswith(".part")]
        if not files:
            # yt-dlp ends without a file, and without an error, only when its max_filesize
            # check refused the download (our match filter's refusal was handled above).
            log.info("[%s] yt-dlp produced no file: over max_filesize", self.request_id)
            raise TooLarge(_too_large_message(self.settings.max_bytes))
        media = max(files, key=lambda p: p.stat().st_size)
        if media.stat().st_size > self.settings.max_bytes:
            raise TooLarge(_too_large_message(self.settings.max_bytes))
        data = media.read_bytes()
        sniff(data[:_SNIFF_BYTES], from_link=True)
        return data

    def _map_os_error(self, error: OSError) -> UserFacingError:
        log.info("[%s] yt-dlp network error: %r", self.request_id, error)
        if self.guard.refused:
            log.warning("[%s] refused connection to %s", self.request_id, self.guard.refused)
            return BlockedAddress(BLOCKED_MESSAGE)
        if self.guard.cancelled.is_set():
            return FetchFailed(_timeout_message(self.settings.timeout_s))
        return FetchFailed(MSG_UNREACHABLE)

    def _map_error(self, error: ytdlp_utils.YoutubeDLError) -> UserFacingError:
        """Turn yt-dlp's error into one of ours; its text goes to the log only."""
        log.info("[%s] yt-dlp failed: %s", self.request_id, error)
        for item in _exception_chain(error):
            if isinstance(item, _Stop):
                return item.error
        if self.guard.refused:
            log.warning("[%s] refused connection to %s", self.request_id, self.guard.refused)
            return BlockedAddress(BLOCKED_MESSAGE)
        if self.guard.cancelled.is_set():
            return FetchFailed(_timeout_message(self.settings.timeout_s))
        return ytdlp_user_error(error, platform=self.platform)


def ytdlp_user_error(error: BaseException, *, platform: Platform) -> UserFacingError:
    """The user-facing error for a yt-dlp failure: by exception type, then HTTP status, then
    the words of the message (yt-dlp has no finer classification of extractor errors)."""
    chain = list(_exception_chain(error))
    text = " ".join(str(item) for item in chain).lower()
    # With allowed_extractors narrowed, a URL no allowed extractor takes is reported as text.
    if "no suitable extractor" in text or any(
        isinstance(item, ytdlp_utils.UnsupportedError) for item in chain
    ):
        return NotMedia(MSG_WEB_PAGE) if platform == "direct" else UnsupportedSite(MSG_NOT_A_POST)
    if any(isinstance(item, ytdlp_utils.GeoRestrictedError) for item in chain):
        return PrivatePost(MSG_GEO)
    status = _http_status(chain)
    # Before the "private" words: these messages also say "sign in" or "--cookies", but it is
    # the site turning us away, not the post being private.
    if any(marker in text for marker in _SITE_REFUSED_MARKERS):
        return FetchFailed(MSG_SITE_REFUSED)
    if status in (401, 403, 404, 410, 451):
        return PrivatePost(MSG_PRIVATE)
    if status is not None and (status >= 500 or status == 429):
        # Checked before the words: "Service Unavailable" is not a private post.
        return FetchFailed(MSG_SERVER_ERROR)
    if any(marker in text for marker in _NO_VIDEO_MARKERS):
        return NotMedia(MSG_NO_VIDEO)
    if any(marker in text for marker in _PRIVATE_MARKERS):
        return PrivatePost(MSG_PRIVATE)
    if status is None and any(
        isinstance(item, ytdlp_net.TransportError | OSError) for item in chain
    ):
        return FetchFailed(MSG_UNREACHABLE)
    return FetchFailed(MSG_SERVER_ERROR)


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what yt-dlp wrapped in it (exc_info, cause), and their causes."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        item = pending.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        exc_info = getattr(item, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            pending.append(exc_info[1])
        cause = getattr(item, "cause", None)
        pending.append(cause if isinstance(cause, BaseException) else None)
        pending.append(item.__cause__)
        pending.append(item.__context__)


def _http_status(chain: list[BaseException]) -> int | None:
    for item in chain:
        if isinstance(item, ytdlp_net.HTTPError):
            return item.status
    return None
