"""yt-dlp as a library: one job per link in a worker thread, behind the network guard, with
its errors turned into one sentence for the user."""

from __future__ import annotations

import functools
import importlib.util
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yt_dlp
import yt_dlp.networking.exceptions as ytdlp_net
import yt_dlp.utils as ytdlp_utils

from bot.config import FetchSettings
from bot.core.errors import (
    BlockedAddress,
    FetchFailed,
    NotMedia,
    PrivatePost,
    TooLarge,
    TooLong,
    UnsupportedSite,
    UserFacingError,
)
from bot.fetch.messages import (
    MSG_GEO,
    MSG_LIVE,
    MSG_NO_VIDEO,
    MSG_NOT_A_POST,
    MSG_PRIVATE,
    MSG_SERVER_ERROR,
    MSG_SITE_REFUSED,
    MSG_TOO_SLOW,
    MSG_UNREACHABLE,
    MSG_WEB_PAGE,
    timeout_message,
    too_large_message,
    too_long_message,
)
from bot.fetch.netguard import (
    BLOCKED_MESSAGE,
    ThreadGuard,
    guard_thread,
)
from bot.fetch.rate import (
    MinRate,
)
from bot.fetch.sniff import (
    SNIFF_BYTES,
    sniff,
)
from bot.links import (
    Platform,
)

log = logging.getLogger(__name__)

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
def check_request_handlers() -> None:
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
class YtdlpJob:
    """One yt-dlp download, run on a worker thread with a fresh YoutubeDL."""

    url: str
    platform: Platform
    settings: FetchSettings
    guard: ThreadGuard
    request_id: str
    temp_dir: Path | None
    refusal: UserFacingError | None = field(default=None, init=False)
    min_rate: MinRate = field(init=False)

    def __post_init__(self) -> None:
        self.min_rate = MinRate.from_settings(self.settings)

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
                self.refusal = TooLong(too_long_message(duration_s, max_s))
        if self.refusal is None:
            return None
        log.info("[%s] refused before download: %s", self.request_id, self.refusal.message)
        return self.refusal.message

    def _progress(self, status: dict[str, Any]) -> None:
        """Stop a download the moment it passes the byte cap, once the fetch timed out, or when
        it runs below the minimum rate after its grace.

        yt-dlp calls this after each block it reads, and reads blocks of about a second's worth
        (1 kB at first), so a link sending far less than 1 kB a second is caught by the timeout
        rather than here."""
        if self.guard.cancelled.is_set():
            raise _Stop(FetchFailed(timeout_message(self.settings.timeout_s)))
        done = status.get("downloaded_bytes") or 0
        total = status.get("total_bytes") or 0
        if max(done, total) > self.settings.max_bytes:
            log.info("[%s] yt-dlp download passed the cap (%d/%d)", self.request_id, done, total)
            raise _Stop(TooLarge(too_large_message(self.settings.max_bytes)))
        # yt-dlp's elapsed counts from when its downloader started on this file.
        elapsed_s = status.get("elapsed")
        if (
            status.get("status") == "downloading"
            and isinstance(elapsed_s, int | float)
            and self.min_rate.too_slow(done, elapsed_s)
        ):
            log.info(
                "[%s] dropped a slow yt-dlp download: %d bytes in %.1f s, under %g bytes/s",
                self.request_id,
                done,
                elapsed_s,
                self.min_rate.bytes_per_s,
            )
            raise _Stop(FetchFailed(MSG_TOO_SLOW))

    def _read_result(self, tmp: Path) -> bytes:
        files = [p for p in tmp.iterdir() if p.is_file() and not p.name.endswith(".part")]
        if not files:
            # yt-dlp ends without a file, and without an error, only when its max_filesize
            # check refused the download (our match filter's refusal was handled above).
            log.info("[%s] yt-dlp produced no file: over max_filesize", self.request_id)
            raise TooLarge(too_large_message(self.settings.max_bytes))
        media = max(files, key=lambda p: p.stat().st_size)
        if media.stat().st_size > self.settings.max_bytes:
            raise TooLarge(too_large_message(self.settings.max_bytes))
        data = media.read_bytes()
        sniff(data[:SNIFF_BYTES], from_link=True)
        return data

    def _map_os_error(self, error: OSError) -> UserFacingError:
        log.info("[%s] yt-dlp network error: %r", self.request_id, error)
        if self.guard.refused:
            log.warning("[%s] refused connection to %s", self.request_id, self.guard.refused)
            return BlockedAddress(BLOCKED_MESSAGE)
        if self.guard.cancelled.is_set():
            return FetchFailed(timeout_message(self.settings.timeout_s))
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
            return FetchFailed(timeout_message(self.settings.timeout_s))
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
