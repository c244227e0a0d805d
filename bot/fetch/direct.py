"""Direct downloads of media files over aiohttp: every redirect hop checked by the network
guard, the size capped and the rate held above the minimum (bot.fetch.rate) while reading."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging

import aiohttp
from yarl import URL

from bot.core.errors import (
    BlockedAddress,
    FetchFailed,
    PrivatePost,
    TooLarge,
    UnsupportedSite,
    UserFacingError,
)
from bot.fetch.messages import (
    MSG_BAD_LINK,
    MSG_BROKEN_OFF,
    MSG_LOGIN,
    MSG_NOT_FOUND,
    MSG_SERVER_ERROR,
    MSG_TOO_MANY_REDIRECTS,
    MSG_TOO_SLOW,
    MSG_UNREACHABLE,
    too_large_message,
)
from bot.fetch.netguard import (
    BLOCKED_MESSAGE,
    ConnectGuard,
)
from bot.fetch.rate import (
    MinRate,
)
from bot.fetch.sniff import (
    SNIFF_BYTES,
    sniff,
)

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK_BYTES = 1 << 16


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


async def download_direct(
    url: str, guard: ConnectGuard, max_bytes: int, min_rate: MinRate, request_id: str
) -> bytes:
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
                    return await _read_capped(response, max_bytes, min_rate, request_id)
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


async def _read_capped(
    response: aiohttp.ClientResponse, max_bytes: int, min_rate: MinRate, request_id: str
) -> bytes:
    if response.status >= 400:
        log.info("[%s] HTTP %d from %s", request_id, response.status, response.url)
        raise _http_status_error(response.status)
    if response.content_length is not None and response.content_length > max_bytes:
        log.info("[%s] Content-Length %d over the cap", request_id, response.content_length)
        raise TooLarge(too_large_message(max_bytes))
    # BytesIO, not bytearray: getvalue() hands over its buffer without copying it, where
    # bytes(bytearray) would hold a second copy of up to max_bytes for a moment.
    data = io.BytesIO()
    head = b""
    # The rate is judged on the body, from the moment the headers are in.
    started = asyncio.get_running_loop().time()
    while chunk := await _read_chunk(response, data.tell(), started, min_rate, request_id):
        if data.tell() + len(chunk) > max_bytes:
            log.info("[%s] stream passed the %d byte cap", request_id, max_bytes)
            raise TooLarge(too_large_message(max_bytes))
        data.write(chunk)
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
            if len(head) == SNIFF_BYTES:
                # Refuse a web page after its first chunk instead of downloading all of it.
                sniff(head, from_link=True)
    if len(head) < SNIFF_BYTES:
        sniff(head, from_link=True)
    return data.getvalue()


async def _read_chunk(
    response: aiohttp.ClientResponse,
    done_bytes: int,
    started: float,
    min_rate: MinRate,
    request_id: str,
) -> bytes:
    """The next chunk (b"" at the end), or FetchFailed if it comes too late for the minimum
    rate: waiting for it until the average would drop below the minimum also catches a server
    that stops sending altogether."""
    try:
        async with asyncio.timeout_at(started + min_rate.deadline_s(done_bytes)):
            return await response.content.read(CHUNK_BYTES)
    except TimeoutError:
        elapsed_s = asyncio.get_running_loop().time() - started
        log.info(
            "[%s] dropped a slow download: %d bytes in %.1f s, under %g bytes/s",
            request_id,
            done_bytes,
            elapsed_s,
            min_rate.bytes_per_s,
        )
        raise FetchFailed(MSG_TOO_SLOW) from None


def _http_status_error(status: int) -> UserFacingError:
    if status in (401, 403, 407):
        return PrivatePost(MSG_LOGIN)
    if status in (404, 410, 451):
        return FetchFailed(MSG_NOT_FOUND)
    return FetchFailed(MSG_SERVER_ERROR)


def map_aiohttp_error(
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
