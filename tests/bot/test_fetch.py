"""The fetcher against a real misbehaving server (tests/fakes/media_server.py), real aiohttp and
real yt-dlp (its generic extractor, offline), with a real clip made by ffmpeg."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yt_dlp.networking.common import _REQUEST_HANDLERS, _RH_PREFERENCES, RequestHandler
from yt_dlp.networking.exceptions import TransportError
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError, UnsupportedError

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
from bot.fetch.fetcher import Fetcher
from bot.fetch.rate import MinRate
from bot.fetch.slots import FetchSlots
from bot.fetch.sniff import sniff
from bot.fetch.ytdlp import ytdlp_user_error
from bot.links import Platform
from tests.fakes.media_server import (
    ENDLESS_MAX_BYTES,
    HTML_PAGE,
    LATE_BYTES,
    LATE_PAUSE_S,
    MediaServer,
    png_bytes,
    serve_media,
)
from tests.media import make_media

SR = 8000
# Small caps so the misbehaving routes hit them quickly; the clip itself is far below.
MAX_BYTES = 300_000
LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 3 s AAC clip in an m4a container, from seeded noise and tones."""
    rng = np.random.default_rng(42)
    t = np.arange(3 * SR) / SR
    samples = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    path = make_media(tmp_path_factory.mktemp("clip"), samples.astype(np.float32), SR, "m4a")
    data = path.read_bytes()
    assert len(data) < MAX_BYTES
    return data


@pytest.fixture
async def server(clip: bytes) -> AsyncIterator[MediaServer]:
    async with serve_media(clip) as running:
        yield running


def settings(**overrides: object) -> FetchSettings:
    base = FetchSettings(
        max_bytes=MAX_BYTES,
        max_duration_s=600,
        timeout_s=20,
        fetch_workers=2,
        allow_networks=LOOPBACK,
        extra_hosts=(),
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def ytdlp_temp(tmp_path: Path) -> Path:
    path = tmp_path / "ytdlp"
    path.mkdir()
    return path


@pytest.fixture
async def fetcher(ytdlp_temp: Path) -> AsyncIterator[Fetcher]:
    """Loopback allowed, and the test server's host handed to yt-dlp's generic extractor."""
    made = Fetcher(settings(extra_hosts=("127.0.0.1",)), temp_dir=ytdlp_temp)
    yield made
    await made.close()


async def fetch_error(fetcher: Fetcher, url: str) -> UserFacingError:
    with pytest.raises(UserFacingError) as caught:
        await fetcher.fetch(Link(url))
    return caught.value


# ---- links ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [HTML_PAGE.encode(), b"  <?xml version='1.0'?><rss/>", b'{"error": "nope"}', b"just text\n"],
)
def test_sniff_refuses_text(head: bytes) -> None:
    with pytest.raises(NotMedia):
        sniff(head, from_link=True)


def test_sniff_text_that_resembles_a_box_header() -> None:
    with pytest.raises(NotMedia):
        sniff(b"The free episode guide, part one", from_link=True)


def test_sniff_accepts_media_and_refuses_images(clip: bytes) -> None:
    sniff(clip[:512], from_link=True)
    sniff(b"OggS\x00\x02" + bytes(100), from_link=False)
    sniff(b"RIFF\x24\x00\x00\x00WAVEfmt ", from_link=False)
    with pytest.raises(NotMedia) as caught:
        sniff(png_bytes(), from_link=False)
    assert "image" in caught.value.message
    with pytest.raises(NotMedia):
        sniff(b"", from_link=False)


# ---- direct media over aiohttp --------------------------------------------------------------


async def test_direct_clip(fetcher: Fetcher, server: MediaServer, clip: bytes) -> None:
    assert await fetcher.fetch(Link(server.url("/video.mp4"))) == clip


async def test_redirect_chain_is_followed(
    fetcher: Fetcher, server: MediaServer, clip: bytes
) -> None:
    assert await fetcher.fetch(Link(server.url("/redirect/3.mp4"))) == clip
    assert [server.hits[f"/redirect/{n}.mp4"] for n in range(4)] == [1, 1, 1, 1]


async def test_redirect_loop_gives_up(fetcher: Fetcher, server: MediaServer) -> None:
    error = await fetch_error(fetcher, server.url("/loop.mp4"))
    assert isinstance(error, FetchFailed)
    assert server.hits["/loop.mp4"] == 6  # the first request and five redirects


@pytest.mark.parametrize("where", ["metadata", "private", "mapped"])
async def test_redirect_to_private_address_refused(
    fetcher: Fetcher, server: MediaServer, where: str
) -> None:
    error = await fetch_error(fetcher, server.url(f"/to/{where}.mp4"))
    assert isinstance(error, BlockedAddress)


async def test_redirect_to_other_scheme_refused(fetcher: Fetcher, server: MediaServer) -> None:
    assert isinstance(await fetch_error(fetcher, server.url("/to/file.mp4")), UnsupportedSite)


async def test_loopback_refused_without_allow_networks(
    server: MediaServer, ytdlp_temp: Path
) -> None:
    strict = Fetcher(settings(allow_networks=(), extra_hosts=("127.0.0.1",)), temp_dir=ytdlp_temp)
    try:
        for path in ("/video.mp4", "/post/short"):  # direct, and through yt-dlp
            assert isinstance(await fetch_error(strict, server.url(path)), BlockedAddress)
        # A name, not an IP literal: refused by the guarded resolver.
        error = await fetch_error(strict, server.url("/video.mp4", host="localhost"))
        assert isinstance(error, BlockedAddress)
    finally:
        await strict.close()
    assert server.total_hits == 0


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.1", "127.1", "017700000001", "[::ffff:127.0.0.1]", "127.0.0.1."]
)
async def test_odd_spellings_of_loopback_refused(server: MediaServer, host: str) -> None:
    strict = Fetcher(settings(allow_networks=()))
    try:
        error = await fetch_error(strict, f"http://{host}:{server.port}/video.mp4")
    finally:
        await strict.close()
    # Either refused as an address, or as a link nobody writes; never fetched.
    assert isinstance(error, BlockedAddress | UnsupportedSite)
    assert server.total_hits == 0


async def test_unsupported_site_never_contacted(server: MediaServer) -> None:
    # Loopback is allowed, but the host is neither a platform nor an extra host.
    plain = Fetcher(settings())
    try:
        for path in ("/post/short", "/page", "/watch/clip"):
            error = await fetch_error(plain, server.url(path))
            assert isinstance(error, UnsupportedSite)
            assert "can't open links from that site" in error.message
    finally:
        await plain.close()
    assert server.total_hits == 0


async def test_platform_link_that_is_not_a_post() -> None:
    plain = Fetcher(settings())
    try:
        error = await fetch_error(plain, "https://www.tiktok.com/@someone")
    finally:
        await plain.close()
    assert isinstance(error, UnsupportedSite)
    assert (
        error.message
        == "That link doesn't point to a single video; send the link to the post itself."
    )


# What a client that stopped at its cap can have been sent: the cap plus what socket buffers
# hold. Far below the endless route's own hard stop.
STOPPED_EARLY_BYTES = 64 * 1024 * 1024
assert STOPPED_EARLY_BYTES < ENDLESS_MAX_BYTES


async def test_endless_stream_stopped_at_cap(fetcher: Fetcher, server: MediaServer) -> None:
    assert isinstance(await fetch_error(fetcher, server.url("/endless.mp4")), TooLarge)
    assert server.sent_bytes["/endless.mp4"] < STOPPED_EARLY_BYTES


async def test_huge_content_length_refused_before_download(
    fetcher: Fetcher, server: MediaServer
) -> None:
    error = await fetch_error(fetcher, server.url("/huge.mp4"))
    assert isinstance(error, TooLarge)
    assert "0.3 MB" in error.message


async def test_slow_response_times_out(server: MediaServer) -> None:
    impatient = Fetcher(settings(timeout_s=1))
    try:
        error = await fetch_error(impatient, server.url("/slow.mp4"))
    finally:
        await impatient.close()
    assert isinstance(error, FetchFailed)
    assert "longer than 1 seconds" in error.message


async def test_web_page_behind_media_url(fetcher: Fetcher, server: MediaServer) -> None:
    error = await fetch_error(fetcher, server.url("/page.mp4"))
    assert isinstance(error, NotMedia)
    assert error.message == "That link is a web page, not a video."


async def test_image_behind_media_url(fetcher: Fetcher, server: MediaServer) -> None:
    error = await fetch_error(fetcher, server.url("/image.mp4"))
    assert isinstance(error, NotMedia)
    assert "image" in error.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [(403, PrivatePost), (401, PrivatePost), (404, FetchFailed), (500, FetchFailed)],
)
async def test_direct_http_errors(
    fetcher: Fetcher, server: MediaServer, status: int, kind: type[UserFacingError]
) -> None:
    error = await fetch_error(fetcher, server.url(f"/status/{status}.mp4"))
    assert isinstance(error, kind)
    assert str(status) not in error.message


# ---- the minimum rate: a crawling link frees its slot ---------------------------------------

TOO_SLOW = "That link sends its video too slowly, so I stopped; try again later."
# Long past the grace, so the crawl can only end by the rate check: the test sees which one.
PATIENT_TIMEOUT_S = 20
SHORT_GRACE_S = 0.5


@pytest.fixture
async def rate_fetcher(ytdlp_temp: Path) -> AsyncIterator[Fetcher]:
    """A short grace, the default minimum rate, and a timeout the crawl never reaches."""
    made = Fetcher(
        settings(
            timeout_s=PATIENT_TIMEOUT_S,
            min_rate_grace_s=SHORT_GRACE_S,
            extra_hosts=("127.0.0.1",),
        ),
        temp_dir=ytdlp_temp,
    )
    yield made
    await made.close()


def test_min_rate_judges_only_after_the_grace() -> None:
    rate = MinRate(bytes_per_s=1000, grace_s=5)
    assert not rate.too_slow(0, 4.9)  # inside the grace, even with nothing yet
    assert not rate.too_slow(6000, 6)
    assert rate.too_slow(5999, 6)
    assert rate.deadline_s(0) == 5  # nothing before the grace ends: judged then
    assert rate.deadline_s(8000) == 8  # 8000 bytes keep the average up for 8 s
    assert not rate.too_slow(8000, rate.deadline_s(8000))


@pytest.mark.parametrize("path", ["/crawl.mp4", "/watch/crawl"], ids=["direct", "ytdlp"])
async def test_crawling_link_dropped_before_the_timeout(
    rate_fetcher: Fetcher, server: MediaServer, ytdlp_temp: Path, path: str
) -> None:
    error = await fetch_error(rate_fetcher, server.url(path))
    assert isinstance(error, FetchFailed)
    # The slow-transfer sentence, not the timeout one: the rate check ended it.
    assert error.message == TOO_SLOW
    assert leftovers(ytdlp_temp) == []


@pytest.mark.parametrize("path", ["/video.mp4", "/watch/clip"], ids=["direct", "ytdlp"])
async def test_fast_download_unaffected_by_the_rate_check(
    rate_fetcher: Fetcher, server: MediaServer, clip: bytes, path: str
) -> None:
    assert await rate_fetcher.fetch(Link(server.url(path))) == clip


@pytest.mark.parametrize("path", ["/late.mp4", "/watch/late"], ids=["direct", "ytdlp"])
async def test_slow_start_that_recovers_inside_the_grace(
    rate_fetcher: Fetcher, server: MediaServer, clip: bytes, path: str
) -> None:
    assert LATE_PAUSE_S < SHORT_GRACE_S
    data = await rate_fetcher.fetch(Link(server.url(path)))
    assert len(data) == LATE_BYTES and data.startswith(clip)


# ---- yt-dlp (generic extractor, offline, against the same server) ---------------------------


def leftovers(path: Path) -> list[Path]:
    return sorted(path.rglob("*"))


async def test_ytdlp_page_with_video(
    fetcher: Fetcher, server: MediaServer, clip: bytes, ytdlp_temp: Path
) -> None:
    assert await fetcher.fetch(Link(server.url("/post/short"))) == clip
    assert server.hits["/clip.m4a"] >= 1
    assert leftovers(ytdlp_temp) == []


async def test_ytdlp_direct_file_without_suffix(
    fetcher: Fetcher, server: MediaServer, clip: bytes, ytdlp_temp: Path
) -> None:
    assert await fetcher.fetch(Link(server.url("/watch/clip"))) == clip
    assert leftovers(ytdlp_temp) == []


async def test_ytdlp_long_video_refused_before_download(
    fetcher: Fetcher, server: MediaServer, ytdlp_temp: Path
) -> None:
    error = await fetch_error(fetcher, server.url("/post/long"))
    assert isinstance(error, TooLong)
    assert error.message == ("That video is 20:00 long; I can only take videos up to 10:00.")
    assert leftovers(ytdlp_temp) == []


async def test_ytdlp_endless_stream_stopped_at_cap(
    fetcher: Fetcher, server: MediaServer, ytdlp_temp: Path
) -> None:
    assert isinstance(await fetch_error(fetcher, server.url("/watch/endless")), TooLarge)
    assert server.sent_bytes["/watch/endless"] < STOPPED_EARLY_BYTES
    assert leftovers(ytdlp_temp) == []


async def test_ytdlp_huge_content_length(
    fetcher: Fetcher, server: MediaServer, ytdlp_temp: Path
) -> None:
    assert isinstance(await fetch_error(fetcher, server.url("/watch/huge")), TooLarge)
    assert leftovers(ytdlp_temp) == []


async def test_ytdlp_slow_download_times_out_and_cleans_up(
    server: MediaServer, ytdlp_temp: Path
) -> None:
    impatient = Fetcher(settings(timeout_s=1, extra_hosts=("127.0.0.1",)), temp_dir=ytdlp_temp)
    try:
        error = await fetch_error(impatient, server.url("/watch/slow"))
    finally:
        # Waits for the worker thread, which must notice the timeout and stop on its own.
        await impatient.close()
    assert isinstance(error, FetchFailed)
    assert "longer than 1 seconds" in error.message
    assert leftovers(ytdlp_temp) == []


async def test_ytdlp_media_on_private_address_refused(
    fetcher: Fetcher, server: MediaServer, ytdlp_temp: Path
) -> None:
    # The page is on an allowed host; the video it names is on 10.0.0.1, which yt-dlp's own
    # connection must not reach.
    assert isinstance(await fetch_error(fetcher, server.url("/post/private")), BlockedAddress)
    assert leftovers(ytdlp_temp) == []


async def test_ytdlp_web_page_without_video(fetcher: Fetcher, server: MediaServer) -> None:
    error = await fetch_error(fetcher, server.url("/page"))
    assert isinstance(error, NotMedia)
    assert error.message == "That link is a web page, not a video."


@pytest.mark.parametrize(
    ("status", "kind"),
    [(403, PrivatePost), (404, PrivatePost), (410, PrivatePost), (503, FetchFailed)],
)
async def test_ytdlp_error_mapping(
    fetcher: Fetcher, server: MediaServer, status: int, kind: type[UserFacingError]
) -> None:
    error = await fetch_error(fetcher, server.url(f"/status/{status}"))
    assert isinstance(error, kind)
    # yt-dlp's own wording ("HTTP Error 403: Forbidden", "[generic]") never reaches the user.
    assert "HTTP" not in error.message and "generic" not in error.message


def download_error(inner: Exception) -> DownloadError:
    """What YoutubeDL.report_error raises: a DownloadError carrying the extractor's error."""
    try:
        raise inner
    except Exception:
        return DownloadError(f"ERROR: {inner}", sys.exc_info())


YT_COOKIES = " Use --cookies-from-browser or --cookies for the authentication."


# Messages as yt-dlp's extractors word them.
@pytest.mark.parametrize(
    ("inner", "kind", "platform"),
    [
        (
            ExtractorError(
                "Requested content is not available, rate-limit reached or login required",
                expected=True,
            ),
            PrivatePost,
            "instagram",
        ),
        (
            ExtractorError("Private video. Sign in if you've been granted access" + YT_COOKIES),
            PrivatePost,
            "youtube",
        ),
        (
            ExtractorError("Sign in to confirm you’re not a bot." + YT_COOKIES),
            FetchFailed,
            "youtube",
        ),
        (ExtractorError("Video unavailable", expected=True), PrivatePost, "youtube"),
        (ExtractorError("You are not authorized to view this protected tweet"), PrivatePost, "x"),
        (ExtractorError("No video could be found in this tweet", expected=True), NotMedia, "x"),
        (ExtractorError("There is no video in this post", expected=True), NotMedia, "tiktok"),
        (
            ExtractorError("Private subreddit; an account that has been approved is required"),
            PrivatePost,
            "reddit",
        ),
        (
            GeoRestrictedError("This video is not available from your location"),
            PrivatePost,
            "youtube",
        ),
        (UnsupportedError("https://www.tiktok.com/@u/video/1"), UnsupportedSite, "tiktok"),
        (UnsupportedError("http://127.0.0.1/page"), NotMedia, "direct"),
        (
            DownloadError("ERROR: No suitable extractor (Twitter) found for URL https://x.com/a"),
            UnsupportedSite,
            "x",
        ),
        (
            ExtractorError(
                "Unable to download webpage: timed out",
                cause=TransportError("timed out"),
            ),
            FetchFailed,
            "tiktok",
        ),
    ],
)
def test_ytdlp_error_mapping_by_message(
    inner: Exception, kind: type[UserFacingError], platform: Platform
) -> None:
    error = ytdlp_user_error(download_error(inner), platform=platform)
    assert isinstance(error, kind)
    assert str(inner) not in error.message


# ---- attachments ----------------------------------------------------------------------------


class Upload:
    """An adapter-side upload: counts how often `read` was called."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    async def read(self) -> bytes:
        self.reads += 1
        return self.data

    def attachment(self, size_bytes: int | None, name: str = "clip.m4a") -> Attachment:
        return Attachment(filename=name, size_bytes=size_bytes, content_type=None, read=self.read)


@pytest.fixture
async def plain_fetcher() -> AsyncIterator[Fetcher]:
    made = Fetcher(settings())
    yield made
    await made.close()


async def test_attachment_clip(plain_fetcher: Fetcher, clip: bytes) -> None:
    upload = Upload(clip)
    assert await plain_fetcher.fetch(upload.attachment(len(clip))) == clip
    assert upload.reads == 1


async def test_attachment_size_checked_before_read(plain_fetcher: Fetcher, clip: bytes) -> None:
    upload = Upload(clip)
    with pytest.raises(TooLarge):
        await plain_fetcher.fetch(upload.attachment(MAX_BYTES + 1))
    assert upload.reads == 0


async def test_attachment_without_size_still_capped(plain_fetcher: Fetcher) -> None:
    upload = Upload(b"\x00\x00\x00\x18ftypmp42" + bytes(MAX_BYTES))
    with pytest.raises(TooLarge):
        await plain_fetcher.fetch(upload.attachment(None))


@pytest.mark.parametrize(
    ("data", "word"), [(HTML_PAGE.encode(), "document"), (png_bytes(), "image"), (b"", "empty")]
)
async def test_attachment_not_media(plain_fetcher: Fetcher, data: bytes, word: str) -> None:
    with pytest.raises(NotMedia) as caught:
        await plain_fetcher.fetch(Upload(data).attachment(len(data)))
    assert word in caught.value.message


async def test_attachment_read_failure_is_told_plainly(plain_fetcher: Fetcher) -> None:
    async def broken() -> bytes:
        raise ConnectionResetError("[Errno 104] Connection reset by peer")

    attachment = Attachment(filename="clip.m4a", size_bytes=10, content_type=None, read=broken)
    with pytest.raises(FetchFailed) as caught:
        await plain_fetcher.fetch(attachment)
    assert "Errno" not in caught.value.message


# ---- slots: bounded waiting, per-platform caps, and when the clock starts ------------------

# Only a guard against a test hanging for ever if the code under test regressed; nothing is
# asserted about how long anything took.
HANG_GUARD_S = 30


def test_slots_cap_each_platform_and_the_total() -> None:
    async def scenario() -> None:
        slots = FetchSlots(2, per_platform=1, wait_s=0.05)
        await slots.acquire("tiktok")
        with pytest.raises(Busy) as caught:
            await slots.acquire("tiktok")  # one platform never takes every slot
        assert "TikTok" in caught.value.message
        await slots.acquire("youtube")
        with pytest.raises(Busy) as caught:
            await slots.acquire("x")  # every slot taken
        assert caught.value.message == (
            "All my download slots are busy right now; try again in a minute."
        )
        slots.release("tiktok")
        await slots.acquire("x")  # the refused wait gave back what it held

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("gated", "other"),
    [("/gate/first", "/watch/clip"), ("/gate/first.mp4", "/video.mp4")],
    ids=["ytdlp", "direct"],
)
async def test_full_pool_answers_busy(
    server: MediaServer, ytdlp_temp: Path, clip: bytes, gated: str, other: str
) -> None:
    fetcher = Fetcher(
        settings(fetch_workers=1, extra_hosts=("127.0.0.1",)),
        temp_dir=ytdlp_temp,
        queue_wait_s=0.2,
    )
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            first = asyncio.create_task(fetcher.fetch(Link(server.url(gated))))
            await server.arrived(gated.removeprefix("/gate/"))
            error = await fetch_error(fetcher, server.url(other))
            server.open_gate(gated.removeprefix("/gate/"))
            assert await first == clip
    finally:
        await fetcher.close()
    assert isinstance(error, Busy)
    assert server.hits[other] == 0


async def test_one_platform_cannot_take_every_worker(
    server: MediaServer, ytdlp_temp: Path, clip: bytes
) -> None:
    # Two workers: one platform ("direct" through yt-dlp here) may have only one of them.
    fetcher = Fetcher(
        settings(fetch_workers=2, extra_hosts=("127.0.0.1",)),
        temp_dir=ytdlp_temp,
        queue_wait_s=0.2,
    )
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            first = asyncio.create_task(fetcher.fetch(Link(server.url("/gate/first"))))
            await server.arrived("first")
            error = await fetch_error(fetcher, server.url("/watch/clip"))
            # Direct downloads have slots of their own.
            assert await fetcher.fetch(Link(server.url("/video.mp4"))) == clip
            server.open_gate("first")
            assert await first == clip
    finally:
        await fetcher.close()
    assert isinstance(error, Busy)
    assert error.message == (
        "I'm already downloading as many video file links as I can; try again in a minute."
    )


@pytest.mark.parametrize("suffix", ["", ".mp4"], ids=["ytdlp", "direct"])
async def test_waiting_for_a_slot_does_not_count_against_the_timeout(
    server: MediaServer, ytdlp_temp: Path, clip: bytes, suffix: str
) -> None:
    timeout_s = 3
    fetcher = Fetcher(
        settings(fetch_workers=1, timeout_s=timeout_s, extra_hosts=("127.0.0.1",)),
        temp_dir=ytdlp_temp,
        queue_wait_s=HANG_GUARD_S,
    )
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            stuck = asyncio.create_task(fetch_error(fetcher, server.url(f"/gate/stuck{suffix}")))
            await server.arrived(f"stuck{suffix}")
            second = asyncio.create_task(fetcher.fetch(Link(server.url(f"/gate/second{suffix}"))))
            # Hold `second` at its gate until past the deadline it would have had if its clock
            # had started when it asked rather than when it got the worker.
            await asyncio.sleep(timeout_s)
            server.open_gate(f"second{suffix}")
            assert await second == clip
            error = await stuck
    finally:
        await fetcher.close()
    # The stuck site itself still times out, with its own clock.
    assert isinstance(error, FetchFailed)
    assert f"longer than {timeout_s} seconds" in error.message


class SilentResolver(AbstractResolver):
    """A DNS server that never answers."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


async def test_name_resolution_counts_against_the_timeout() -> None:
    fetcher = Fetcher(settings(timeout_s=1), resolver=SilentResolver())
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            error = await fetch_error(
                fetcher, "https://www.tiktok.com/@someone/video/7234567890123456789"
            )
    finally:
        await fetcher.close()
    assert isinstance(error, FetchFailed)
    assert "longer than 1 seconds" in error.message


async def test_closed_fetcher_refuses_plainly(server: MediaServer) -> None:
    fetcher = Fetcher(settings())
    await fetcher.close()
    error = await fetch_error(fetcher, server.url("/video.mp4"))
    assert isinstance(error, Busy)
    assert server.total_hits == 0


# ---- proxies and request handlers the guard cannot see --------------------------------------


async def test_proxy_from_environment_is_not_used(
    fetcher: Fetcher, server: MediaServer, clip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_media(clip) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url("/"))
            monkeypatch.setenv(name.lower(), proxy.url("/"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert await fetcher.fetch(Link(server.url("/post/short"))) == clip  # yt-dlp
        assert await fetcher.fetch(Link(server.url("/video.mp4"))) == clip  # aiohttp
    assert proxy.total_hits == 0


class Impersonator(RequestHandler):
    """Stands in for curl_cffi: a request handler yt-dlp would prefer, whose connections the
    audit hook could not see (counted here, and refused, instead of made)."""

    RH_KEY = "CityWokTestImpersonator"
    RH_NAME = "impersonator"
    _SUPPORTED_URL_SCHEMES = ("http", "https")
    _SUPPORTED_PROXY_SCHEMES = None
    _SUPPORTED_FEATURES = None
    used = 0

    def _check_extensions(self, extensions: dict[str, Any]) -> None:
        extensions.clear()

    def _send(self, request: Any) -> Any:
        type(self).used += 1
        raise TransportError("the impersonating handler was used")


def _prefer_impersonator(handler: RequestHandler, request: Any) -> int:
    return 1000 if isinstance(handler, Impersonator) else 0


@pytest.fixture
def impersonator() -> Iterator[type[Impersonator]]:
    """Installed the way yt-dlp registers curl_cffi when it is importable."""
    _REQUEST_HANDLERS[Impersonator.RH_KEY] = Impersonator
    _RH_PREFERENCES.add(_prefer_impersonator)
    Impersonator.used = 0
    try:
        yield Impersonator
    finally:
        _REQUEST_HANDLERS.pop(Impersonator.RH_KEY, None)
        _RH_PREFERENCES.discard(_prefer_impersonator)


async def test_ytdlp_uses_only_handlers_the_guard_sees(
    fetcher: Fetcher, server: MediaServer, clip: bytes, impersonator: type[Impersonator]
) -> None:
    assert await fetcher.fetch(Link(server.url("/post/short"))) == clip
    assert impersonator.used == 0


# ---- memory ---------------------------------------------------------------------------------


async def test_direct_download_is_not_copied_at_the_end(server: MediaServer) -> None:
    size = 4_000_000
    fetcher = Fetcher(settings(max_bytes=size))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        data = await fetcher.fetch(Link(server.url(f"/big/{size}.mp4")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await fetcher.close()
    assert len(data) == size
    # One copy of the download plus buffers; a second full copy would double it.
    assert peak - before < 1.5 * size


@pytest.mark.parametrize(
    "url",
    [
        "http://" + "a" * 64 + ".example/clip.mp4",  # a label IDNA cannot encode
        "http://a..b/clip.mp4",
        "http://xn--zz.example/clip.mp4",  # broken punycode
        "https://" + "a" * 64 + ".tiktok.com/@u/video/1",  # the same, on the yt-dlp path
        "https://a..tiktok.com/@u/video/1",
    ],
)
async def test_unencodable_host_names_are_refused_plainly(plain_fetcher: Fetcher, url: str) -> None:
    error = await fetch_error(plain_fetcher, url)
    assert isinstance(error, UnsupportedSite)
    assert error.message == "That doesn't look like a link I can open."
