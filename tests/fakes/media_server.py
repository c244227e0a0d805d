"""A real aiohttp server on 127.0.0.1 that misbehaves the ways the web does, for fetcher tests.

It serves one real media clip (made by the test with ffmpeg) and, around it: redirect chains and
loops, redirects to private addresses and other schemes, an endless stream, a huge
Content-Length, a trickle that never finishes, a crawl (a few bytes every 0.2 s), a late start
that then sends fast, a web page and an image behind media-looking
URLs, error statuses, JSON-LD video pages that yt-dlp's generic extractor understands, a large
file sent in small writes, and gated routes that hold a request until the test opens the gate
(so tests order events by what the server saw, never by how long something took).
Every request is counted by path, so tests can prove a link was never contacted.

Must never: bind anything but 127.0.0.1, or keep a handler running after the client has gone
or the server is stopping (every open-ended handler checks both).
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

HUGE_CONTENT_LENGTH = 10 * 1024**3
# Hard stops, so no handler can run away even if a client never disconnects. A client that
# reads this much has ignored its cap (tests check it stopped far earlier).
ENDLESS_MAX_BYTES = 256 * 1024 * 1024
_TRICKLE_MAX_S = 60.0
_TRICKLE_INTERVAL_S = 0.05
_STALL_S = 5.0
# The crawl: 64 bytes every 0.2 s (320 bytes/s), far below any sensible minimum rate.
CRAWL_PIECE_BYTES = 64
_CRAWL_INTERVAL_S = 0.2
# The late start: nothing for a moment after the headers, then LATE_BYTES (the clip padded with
# zeros) at about 320 kB/s, so the transfer runs on well after a short grace period.
LATE_PAUSE_S = 0.3
LATE_BYTES = 250_000
_LATE_PIECE_BYTES = 16 * 1024
_LATE_INTERVAL_S = 0.05
_GATE_MAX_S = 60.0
_GATE_POLL_S = 0.05
_ZEROS = bytes(64 * 1024)

HTML_PAGE = (
    "<!doctype html><html><head><title>Not a video</title></head>"
    "<body><p>This is a web page about a video, not the video itself.</p></body></html>"
)


def png_bytes() -> bytes:
    """A valid 1x1 PNG image."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def video_page(title: str, duration_s: int, content_url: str) -> str:
    """A page whose JSON-LD VideoObject names a duration and the media URL, as sites publish."""
    data = {
        "@context": "https://schema.org",
        "@type": "VideoObject",
        "name": title,
        "description": title,
        "duration": f"PT{duration_s}S",
        "contentUrl": content_url,
        "uploadDate": "2024-01-01",
    }
    return (
        f"<!doctype html><html><head><title>{title}</title>"
        f'<script type="application/ld+json">{json.dumps(data)}</script></head>'
        f"<body><h1>{title}</h1></body></html>"
    )


@dataclass
class MediaServer:
    """A running server: `url(path)` builds links to it; `hits` counts requests per path."""

    clip: bytes
    server: TestServer | None = None
    hits: Counter[str] = field(default_factory=Counter)
    # Bytes the endless route wrote, per path: shows where a client stopped reading.
    sent_bytes: Counter[str] = field(default_factory=Counter)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _opened: dict[str, asyncio.Event] = field(default_factory=dict)
    _arrived: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def total_hits(self) -> int:
        return sum(self.hits.values())

    def open_gate(self, name: str) -> None:
        """Let requests to /gate/<name> (held until now, and later ones) have the clip."""
        self._opened.setdefault(name, asyncio.Event()).set()

    async def arrived(self, name: str) -> None:
        """Wait until a request for /gate/<name> has reached the server."""
        await self._arrived.setdefault(name, asyncio.Event()).wait()


def _build_app(state: MediaServer) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def count_hits(request: web.Request, handler):  # type: ignore[no-untyped-def]
        state.hits[request.path] += 1
        return await handler(request)

    async def media(request: web.Request) -> web.Response:
        content_type = "audio/mp4" if request.path.endswith(".m4a") else "video/mp4"
        return web.Response(body=state.clip, content_type=content_type)

    routes.get("/clip.m4a")(media)
    routes.get("/video.mp4")(media)
    # The same clip at a path without a media suffix (for yt-dlp's generic extractor).
    routes.get("/watch/clip")(media)

    @routes.get("/redirect/{n:\\d+}.mp4")
    async def redirect_chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        target = f"/redirect/{n - 1}.mp4" if n > 0 else "/video.mp4"
        raise web.HTTPFound(target)

    @routes.get("/loop.mp4")
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop.mp4")

    @routes.get("/to/{where}.mp4")
    async def redirect_elsewhere(request: web.Request) -> web.Response:
        targets = {
            "metadata": "http://169.254.169.254/latest/meta-data/clip.mp4",
            "private": "http://10.0.0.1/clip.mp4",
            "mapped": "http://[::ffff:10.0.0.1]/clip.mp4",
            "file": "file:///etc/passwd",
        }
        raise web.HTTPFound(targets[request.match_info["where"]])

    @routes.get("/endless.mp4")
    @routes.get("/watch/endless")
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        await response.prepare(request)
        sent = 0
        try:
            await response.write(state.clip)
            while sent < ENDLESS_MAX_BYTES and not _gone(request, state):
                # A client that stops reading without closing would block us here for ever.
                async with asyncio.timeout(_STALL_S):
                    await response.write(_ZEROS)
                sent += len(_ZEROS)
                state.sent_bytes[request.path] = sent
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading and hung up: what a capped client should do
        except TimeoutError:
            _hang_up(request)
        return response

    @routes.get("/huge.mp4")
    @routes.get("/watch/huge")
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = HUGE_CONTENT_LENGTH
        return await _trickle(request, response, state)

    @routes.get("/slow.mp4")
    @routes.get("/watch/slow")
    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        return await _trickle(request, response, state)

    @routes.get("/crawl.mp4")
    @routes.get("/watch/crawl")
    async def crawl(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TRICKLE_MAX_S
        body = state.clip + _ZEROS
        start = 0
        try:
            while loop.time() < deadline and not _gone(request, state):
                await response.write(body[start : start + CRAWL_PIECE_BYTES])
                start = (start + CRAWL_PIECE_BYTES) % len(body)
                await asyncio.sleep(_CRAWL_INTERVAL_S)
        except (ConnectionError, RuntimeError):
            pass
        return response

    @routes.get("/late.mp4")
    @routes.get("/watch/late")
    async def late(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = LATE_BYTES
        await response.prepare(request)
        body = state.clip + bytes(LATE_BYTES - len(state.clip))
        try:
            await asyncio.sleep(LATE_PAUSE_S)
            for start in range(0, LATE_BYTES, _LATE_PIECE_BYTES):
                if _gone(request, state):
                    break
                await response.write(body[start : start + _LATE_PIECE_BYTES])
                await asyncio.sleep(_LATE_INTERVAL_S)
        except (ConnectionError, RuntimeError):
            pass
        return response

    @routes.get("/gate/{name}")
    async def gate(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        state._arrived.setdefault(name, asyncio.Event()).set()
        opened = state._opened.setdefault(name, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _GATE_MAX_S
        # Polled rather than awaited, so a client that gave up frees the handler.
        while not opened.is_set() and loop.time() < deadline and not _gone(request, state):
            await asyncio.sleep(_GATE_POLL_S)
        if not opened.is_set():
            _hang_up(request)
            return web.Response(status=503)
        return await media(request)

    @routes.get("/big/{n:\\d+}.mp4")
    async def big(request: web.Request) -> web.StreamResponse:
        """The clip padded to n bytes, written in small pieces (the server holds no copy)."""
        size = int(request.match_info["n"])
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = size
        await response.prepare(request)
        try:
            await response.write(state.clip[:size])
            sent = min(size, len(state.clip))
            while sent < size and not _gone(request, state):
                piece = _ZEROS[: size - sent]
                await response.write(piece)
                sent += len(piece)
        except (ConnectionError, RuntimeError):
            pass
        return response

    @routes.get("/page.mp4")
    @routes.get("/page")
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=HTML_PAGE, content_type="text/html")

    @routes.get("/image.mp4")
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=png_bytes(), content_type="video/mp4")

    @routes.get("/status/{code:\\d+}")
    @routes.get("/status/{code:\\d+}.mp4")
    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")

    @routes.get("/post/{name}")
    async def post(request: web.Request) -> web.Response:
        base = f"http://127.0.0.1:{state.port}"
        pages = {
            "short": video_page("A short clip", 5, f"{base}/clip.m4a"),
            "long": video_page("A long episode", 1200, f"{base}/clip.m4a"),
            "private": video_page("Hidden", 5, "http://10.0.0.1/clip.m4a"),
        }
        return web.Response(text=pages[request.match_info["name"]], content_type="text/html")

    app = web.Application(middlewares=[count_hits])
    app.add_routes(routes)
    return app


def _hang_up(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


def _gone(request: web.Request, state: MediaServer) -> bool:
    transport = request.transport
    return state.stopping.is_set() or transport is None or transport.is_closing()


async def _trickle(
    request: web.Request, response: web.StreamResponse, state: MediaServer
) -> web.StreamResponse:
    """Send the clip's first bytes, then one byte at a time until the client or server stops."""
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _TRICKLE_MAX_S
    try:
        await response.write(state.clip[:64])
        while loop.time() < deadline and not _gone(request, state):
            await asyncio.sleep(_TRICKLE_INTERVAL_S)
            await response.write(b"\0")
    except (ConnectionError, RuntimeError):
        pass
    return response


@asynccontextmanager
async def serve_media(clip: bytes) -> AsyncIterator[MediaServer]:
    """Run the media server on 127.0.0.1 (port chosen by the OS) for the block's duration."""
    state = MediaServer(clip=clip)
    server = TestServer(_build_app(state), host="127.0.0.1", port=0)
    state.server = server
    await server.start_server()
    try:
        yield state
    finally:
        state.stopping.set()
        await server.close()
