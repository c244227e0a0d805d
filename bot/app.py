"""`citywok run`: build the shared pieces once, start the chat adapters, stop cleanly.

One process, one event loop we own (never a library's `run()`), one index in memory, one
matcher thread pool, one set of limits: Telegram and Discord share them all, so a user's quota
and the machine's capacity are the same whichever platform a clip arrives on.

Adapters are imported only when their token is set, so a missing optional platform library
(or an adapter still being written) costs nothing. Each is started through the small `Adapter`
protocol; SIGTERM or SIGINT drains the service (requests running get `app.shutdown_grace_s`,
then end with "I'm restarting"), stops the adapters, then the pools. An adapter may expose
`fatal: asyncio.Event` and set it when it can no longer serve; when every adapter has, the bot
stops with `AdaptersFailed` (exit status 1) so that its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.adapters.base import Adapter
from bot.config import Settings
from bot.core.cache import AnswerCache
from bot.core.limits import Limits
from bot.core.service import Service
from matcher.errors import IndexLoadError
from matcher.identify import Matcher
from matcher.index import FingerprintIndex
from matcher.params import FingerprintParams
from matcher.store import MANIFEST, load_index, read_manifest

logger = logging.getLogger(__name__)

# After the drain's grace (`app.shutdown_grace_s`), the adapters (delivering the last replies)
# and then the fetcher get these long to stop: a stuck network call must not keep the process
# alive past a service manager's kill timeout (Docker: 10 s by default; with the default 5 s
# grace, 5 + 4 + 0.3 s fits). A client's own stop needs a few seconds (python-telegram-bot ends
# its long poll and closes its HTTP pool).
STOP_TIMEOUT_S = 4.0
FETCHER_CLOSE_TIMEOUT_S = 0.3


AdapterFactory = Callable[[Settings, Service], Adapter]


class StartupError(Exception):
    """The bot cannot start; the message says what the operator must do."""


class AdaptersFailed(StartupError):
    """Every chat platform failed while running (e.g. Discord refused the gateway for good):
    the process exits non-zero so that its supervisor restarts it."""


def _lazy(module: str, name: str) -> AdapterFactory:
    def make(settings: Settings, service: Service) -> Adapter:
        cls = getattr(importlib.import_module(module), name)
        adapter: Adapter = cls(settings, service)
        return adapter

    return make


# The real adapters, by platform; imported only when started.
DEFAULT_ADAPTERS: dict[str, AdapterFactory] = {
    "telegram": _lazy("bot.adapters.telegram", "TelegramAdapter"),
    "discord": _lazy("bot.adapters.discord", "DiscordAdapter"),
}


def configured_platforms(settings: Settings) -> list[str]:
    """Platforms whose token is set, in a fixed order."""
    tokens = {"telegram": settings.telegram.token, "discord": settings.discord.token}
    return [name for name, token in tokens.items() if token]


async def run(
    settings: Settings,
    *,
    adapters: Mapping[str, AdapterFactory] | None = None,
    stop: asyncio.Event | None = None,
    fetcher: Any = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or until `stop` is set). Raises `StartupError` when no
    platform token is set or an adapter fails to start, `AdaptersFailed` (a `StartupError`)
    when every adapter has set its `fatal` event, `IndexLoadError` for a bad index.

    `adapters`, `stop` and `fetcher` are for tests and embedding; the defaults are the real
    ones.
    """
    factories = DEFAULT_ADAPTERS if adapters is None else adapters
    platforms = [p for p in configured_platforms(settings) if p in factories]
    if not platforms:
        raise StartupError(
            "no chat platform configured: set TELEGRAM_BOT_TOKEN and/or DISCORD_TOKEN in the "
            "environment"
        )
    index, generation = await asyncio.to_thread(_load_index, settings)
    logger.info(
        "index %s: %d episodes, %.1f h",
        settings.index.dir,
        len(index.episodes),
        index.duration_s / 3600,
    )
    stop = stop or asyncio.Event()
    executor = ThreadPoolExecutor(settings.matcher.workers, thread_name_prefix="citywok-match")
    if fetcher is None:
        from bot.fetch.fetcher import Fetcher

        fetcher = Fetcher(settings.fetch)
    limits = Limits(settings.limits)
    if settings.limits.max_concurrent > settings.matcher.workers:
        logger.warning(
            "limits.max_concurrent (%d) is above matcher.workers (%d): the extra matches wait "
            "unseen in the thread pool instead of in the queue users can see",
            settings.limits.max_concurrent,
            settings.matcher.workers,
        )
    if settings.limits.max_downloads > settings.fetch.fetch_workers:
        logger.warning(
            "limits.max_downloads (%d) is above fetch.fetch_workers (%d): the extra link "
            "downloads wait unseen in the yt-dlp pool, and their time there counts against "
            "fetch.timeout_s",
            settings.limits.max_downloads,
            settings.fetch.fetch_workers,
        )
    matcher = Matcher(index)
    warm_started = time.monotonic()
    await asyncio.to_thread(matcher.warm_up)
    logger.info("matcher ready in %.1f s", time.monotonic() - warm_started)
    service = Service(
        matcher, fetcher, limits, settings, executor, cache=AnswerCache(), generation=generation
    )
    started: list[tuple[str, Adapter]] = []
    failure: str | None = None
    try:
        with _stop_on_signals(stop):
            for platform in platforms:
                try:
                    adapter = factories[platform](settings, service)
                    await adapter.start()
                except Exception as e:
                    logger.exception("%s adapter failed to start", platform)
                    raise StartupError(f"the {platform} bot failed to start: {e}") from e
                started.append((platform, adapter))
                logger.info("%s bot started", platform)
            logger.info(
                "citywok is running (%s); stop with Ctrl-C or SIGTERM", ", ".join(platforms)
            )
            failure = await _serve(stop, started)
            logger.info("stopping")
    finally:
        # Nobody can read answers once every platform is gone: no grace then.
        grace_s = 0.0 if failure or not started else settings.app.shutdown_grace_s
        await _shut_down(service, started, fetcher, executor, grace_s=grace_s)
    if failure is not None:
        raise AdaptersFailed(failure)


async def _serve(stop: asyncio.Event, started: list[tuple[str, Adapter]]) -> str | None:
    """Until `stop` is set (None) or every adapter has reported a fatal error (what failed).

    An adapter reports one by setting its `fatal: asyncio.Event` attribute; an adapter without
    one is taken to run until stopped, so the bot keeps serving while it does.
    """
    fatal = {
        platform: event
        for platform, adapter in started
        if isinstance(event := getattr(adapter, "fatal", None), asyncio.Event)
    }
    waits = {asyncio.ensure_future(stop.wait()): "stop"} | {
        asyncio.ensure_future(event.wait()): platform for platform, event in fatal.items()
    }
    try:
        while True:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                return None
            for task in done:
                logger.error("the %s bot failed and is off", waits.pop(task))
            if len(fatal) == len(started) and all(e.is_set() for e in fatal.values()):
                message = f"every chat platform failed ({', '.join(fatal)}); see the log above"
                logger.error("%s: stopping so that the supervisor restarts the bot", message)
                return message
    finally:
        for task in waits:
            task.cancel()


async def _shut_down(
    service: Service,
    started: list[tuple[str, Adapter]],
    fetcher: Any,
    executor: ThreadPoolExecutor,
    *,
    grace_s: float,
) -> None:
    """Drain the service (new requests hear "I'm restarting", running ones get `grace_s`, then
    hear it too), let the adapters deliver those last replies and stop, then close the rest.
    Every step is bounded: under `grace_s` + 2 s in all (10 s with the default grace)."""
    try:
        await service.drain(grace_s)
    except Exception:
        logger.exception("draining the service failed")
    # In parallel: the time bound is the slowest adapter's, not their sum.
    await asyncio.gather(
        *(_stop_adapter(platform, adapter) for platform, adapter in reversed(started))
    )
    close = getattr(fetcher, "close", None)
    if close is not None:
        try:
            async with asyncio.timeout(FETCHER_CLOSE_TIMEOUT_S):
                await close()
        except TimeoutError:
            logger.warning("the fetcher did not close within %.1f s", FETCHER_CLOSE_TIMEOUT_S)
        except Exception:
            logger.exception("the fetcher did not close cleanly")
    # Matches still running end after their current stage (their streams were closed); queued
    # pool work is dropped.
    executor.shutdown(wait=False, cancel_futures=True)
    logger.info("stopped")


def _load_index(settings: Settings) -> tuple[FingerprintIndex, str]:
    """Pull the published index first when a remote is configured, then open it. Returns the
    index and its generation (answers are cached per generation)."""
    index_settings = settings.index
    if index_settings.remote:
        from bot.ops.remote_index import RemoteLocation, pull_index

        location = RemoteLocation.parse(
            index_settings.remote, endpoint_url=index_settings.remote_endpoint_url
        )
        try:
            if pull_index(location, index_settings.dir):
                logger.info("pulled a new index from %s", location)
        except IndexLoadError:
            if not (index_settings.dir / MANIFEST).exists():
                raise
            # Serving yesterday's index beats not serving at all.
            logger.exception("could not pull %s; serving the local index", location)
    index = load_index(index_settings.dir, params=FingerprintParams())
    return index, str(read_manifest(index_settings.dir)["generation"])


async def _stop_adapter(platform: str, adapter: Adapter) -> None:
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await adapter.stop()
        logger.info("%s bot stopped", platform)
    except TimeoutError:
        logger.warning(
            "%s adapter did not stop within %.1f s; leaving it", platform, STOP_TIMEOUT_S
        )
    except Exception:
        logger.exception("%s adapter did not stop cleanly", platform)


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Any:
    """SIGTERM and SIGINT set `stop` while the bot runs, then get their handlers back."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            # Not the main thread, or a platform without signals: rely on `stop`.
            logger.debug("cannot handle %s here", sig.name)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
