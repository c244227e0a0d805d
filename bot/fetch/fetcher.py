"""Fetch stage: turns a chat link or attachment into media bytes, capped and checked.

Links to the supported sites (TikTok, Instagram, YouTube, X/Twitter, Reddit) go to yt-dlp, used
as a library in a small thread pool of its own; links straight to a media file go to aiohttp.
Attachments are read through the adapter's `read()` after their declared size is checked.

This module must never: open a link from a site it does not support, connect to an address the
network guard refuses (every host and redirect hop is checked, at connect time), hold more than
`max_bytes` of a download, let a download run past `timeout_s` (or, once past its grace, run
below the minimum rate, so a trickling link frees its slot), leave yt-dlp's temporary files
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
import ipaddress
import logging
import socket
from pathlib import Path

import aiohttp
from aiohttp.abc import AbstractResolver

from bot.config import FetchSettings
from bot.core.errors import (
    BlockedAddress,
    Busy,
    FetchFailed,
    TooLarge,
    UnsupportedSite,
)
from bot.core.request import Attachment, Link
from bot.fetch.direct import (
    download_direct,
    map_aiohttp_error,
)
from bot.fetch.messages import (
    MSG_BAD_LINK,
    MSG_BROKEN_OFF,
    MSG_CLOSING,
    MSG_UNREACHABLE,
    timeout_message,
    too_large_message,
)
from bot.fetch.netguard import (
    BLOCKED_MESSAGE,
    AddressPolicy,
    ConnectGuard,
    ThreadGuard,
)
from bot.fetch.rate import (
    MinRate,
)
from bot.fetch.slots import (
    FetchSlots,
)
from bot.fetch.sniff import (
    SNIFF_BYTES,
    sniff,
)
from bot.fetch.ytdlp import (
    YtdlpJob,
    check_request_handlers,
)
from bot.links import (
    MAX_LINKS_PER_MESSAGE,
    ParsedLink,
    Platform,
    classify_link,
    find_links,
    has_media_suffix,
    link_refusal,
    parse_link,
)

log = logging.getLogger(__name__)

# How long a fetch may wait for a free slot before the user is told we are busy. Short: a person
# is watching, and "try again in a minute" beats a spinner that ends in a timeout.
QUEUE_WAIT_S = 10.0


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
        check_request_handlers()
        self.settings = settings
        self.policy = AddressPolicy.from_cidrs(settings.allow_networks)
        self._extra_hosts = tuple(settings.extra_hosts)
        # Where yt-dlp's per-job temporary directories go (system default when None).
        self._temp_dir = temp_dir
        self._jobs: set[YtdlpJob] = set()
        workers = max(1, settings.fetch_workers)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="citywok-fetch"
        )
        self._ytdlp_slots = FetchSlots(workers, per_platform=workers - 1, wait_s=queue_wait_s)
        # Direct downloads use no thread, but each holds a socket and up to max_bytes.
        self._direct_slots = FetchSlots(workers, per_platform=workers, wait_s=queue_wait_s)
        self._resolver = resolver
        self._min_rate = MinRate.from_settings(settings)
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
            raise TooLarge(too_large_message(max_bytes))
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                data = await attachment.read()
        except TimeoutError:
            raise FetchFailed(timeout_message(self.settings.timeout_s)) from None
        except (aiohttp.ClientError, OSError) as error:
            # The adapter's download from the chat platform broke; its text stays in the log.
            log.info("[%s] reading the attachment failed: %r", request_id, error)
            raise FetchFailed(MSG_BROKEN_OFF) from None
        # The declared size may be missing or wrong.
        if len(data) > max_bytes:
            raise TooLarge(too_large_message(max_bytes))
        sniff(data[:SNIFF_BYTES], from_link=False)
        return data

    # -- links

    async def _fetch_link(self, url: str, request_id: str) -> bytes:
        link = parse_link(url)
        if link is None:
            raise UnsupportedSite(MSG_BAD_LINK)
        platform = classify_link(link.url, extra_hosts=self._extra_hosts)
        if platform is None:
            log.info("[%s] refused link to %s (%s)", request_id, link.host, link.path)
            raise UnsupportedSite(link_refusal(link.url, extra_hosts=self._extra_hosts))
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
                return await download_direct(
                    url, guard, self.settings.max_bytes, self._min_rate, request_id
                )
        except TimeoutError:
            log.info("[%s] download timed out after %g s", request_id, self.settings.timeout_s)
            raise FetchFailed(timeout_message(self.settings.timeout_s)) from None
        except aiohttp.ClientError as error:
            raise map_aiohttp_error(error, guard, request_id) from None
        except ValueError as error:  # yarl/idna on a host name aiohttp cannot encode
            log.info("[%s] unusable URL: %r", request_id, error)
            raise UnsupportedSite(MSG_BAD_LINK) from None
        finally:
            self._direct_slots.release("direct")

    async def _fetch_ytdlp(self, link: ParsedLink, platform: Platform, request_id: str) -> bytes:
        await self._ytdlp_slots.acquire(platform, request_id)
        job = YtdlpJob(
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
            raise FetchFailed(timeout_message(self.settings.timeout_s)) from None
        except asyncio.CancelledError:
            job.guard.cancel()
            raise
        finally:
            if not submitted:
                self._ytdlp_slots.release(platform)

    def _submit(self, job: YtdlpJob, platform: Platform) -> concurrent.futures.Future[bytes]:
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
