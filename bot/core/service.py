"""The bot's core: one request in, a stream of progress states out, for any chat platform.

    limits → (Queued…) → Fetching → fetch → (Queued…) → decode → Listening… → Finished | Failed

A clip seen before (same link, or same bytes) is answered from the answer cache, when one is
given, without matching.

A request takes its place in the global line before downloading (so the number of downloads,
and the bytes they hold, are bounded by the limits), downloads once it is among the first
`limits.max_downloads` in line, then takes the first free match slot. Decoding and matching
run in the matcher thread pool behind the global concurrency limit. Each stage result of
`Matcher.identify_stages` is handed from the worker thread to the loop the moment it exists
(`call_soon_threadsafe` onto a queue), so the reply can show "probably S01E02" after 3 s of a
60 s clip.

`handle` never raises for a bad request: every path ends in `Finished` or `Failed`. Errors a
user can act on keep their message; anything else is logged with the request id and shown as
`Internal(request id)`. It must never import a chat library.

Shutdown: `drain(grace_s)` refuses new requests ("I'm restarting"), waits for running ones,
then ends every stream still running with that same `Failed` state, so each chat still gets
a last word from the adapter's `LiveReply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from bot.config import Settings
from bot.core.cache import AnswerCache, media_key
from bot.core.errors import (
    Busy,
    Internal,
    NoAudio,
    NotMedia,
    TooLong,
    UnsupportedSite,
    UserFacingError,
)
from bot.core.limits import Limits, Quota, RecentRefusals, Ticket
from bot.core.request import Link, Request, Source, User
from bot.core.states import Failed, Fetching, Finished, Listening, Queued, State, is_final
from bot.links import link_key, link_refusal
from bot.logs import bind
from matcher.budget import Budget
from matcher.decode import Audio, decode_bytes
from matcher.errors import DecodeTimeoutError, NoAudioStreamError, UnreadableMediaError
from matcher.identify import Matcher
from matcher.result import MatchResult

logger = logging.getLogger(__name__)

_DECODE_TOO_SLOW = "That file took too long to read, so I stopped; a shorter clip will work."
_SHUTTING_DOWN = "I'm restarting; send that again in a minute."
# For adapters that must end a reply themselves on shutdown (their stop() timed out).
RESTARTING_MESSAGE = _SHUTTING_DOWN


def restarting(request_id: str) -> Failed:
    """The final state of a request cut short by a restart: "send that again in a minute"."""
    return Failed(Busy(_SHUTTING_DOWN), request_id)


# After the drain's grace, how long aborted streams get to wind down (cancelling a download or
# leaving the queue is quick; a worker thread is not waited for).
_ABORT_WAIT_S = 0.5
# A match runs at least this long (s) before it gives its slot to a waiting request: short
# clips finish within their first turn, and a long one's turns stay worth their switch.
MIN_TURN_S = 1.0


class AnswerCatalogue(Protocol):
    """What the catalogue adds to an answer (`bot.core.catalogue`): where to watch each moment
    it names, and a still of the moment when the index has previews."""

    def decorate(self, finished: Finished) -> Finished: ...


class AnswerLog(Protocol):
    """Where answers are kept for their feedback buttons (`bot.core.feedback`)."""

    def record_answer(self, request: Request, finished: Finished, keys: list[str]) -> None: ...


class MediaFetcher(Protocol):
    """What the service needs from `bot.fetch.fetcher.Fetcher`: the media bytes a source points at,
    capped, or a `UserFacingError`."""

    async def fetch(self, source: Source, *, request_id: str = ...) -> bytes: ...


@dataclass(frozen=True)
class _TurnOver:
    """Sent by the worker when it gave up its turn between two results (others wait)."""


@dataclass(frozen=True)
class _StagesDone:
    """Sent by the worker after its last stage, or with the exception that stopped it."""

    error: BaseException | None = None


class Service:
    def __init__(
        self,
        matcher: Matcher,
        fetcher: MediaFetcher,
        limits: Limits,
        settings: Settings,
        executor: Executor,
        *,
        cache: AnswerCache[Finished] | None = None,
        generation: str = "",
        on_step: Callable[[str, str, float], None] | None = None,
        catalogue: AnswerCatalogue | None = None,
        answers: AnswerLog | None = None,
    ) -> None:
        """`cache`: answers for reposted clips, keyed by link and by media digest; answers
        are only shared within one index `generation` (a new index forgets them).

        `on_step(request_id, step, time.monotonic())`, for measuring (bench/bot_latency): at
        "admitted", "fetched", "decoded", "stage:<heard_s>" for each stage result, and
        "final" just before the last state. Called on the loop; an exception from it is
        logged and the request goes on."""
        self.matcher = matcher
        self.fetcher = fetcher
        self._extra_hosts = tuple(settings.fetch.extra_hosts)
        self.limits = limits
        self._refusals = RecentRefusals()
        self.settings = settings
        self.executor = executor
        self.cache = cache
        self.generation = generation
        self.catalogue = catalogue
        self.answers = answers
        self._on_step = on_step
        self._draining = False
        # Set when the drain's grace is over: every stream still running ends "restarting".
        self._abort = asyncio.Event()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def quota(self, user: User) -> Quota:
        """What `user` may still ask for (for /help): adapters never hold the limits."""
        return self.limits.quota(user)

    # -- shutdown

    @property
    def draining(self) -> bool:
        """True once `drain` was called: new requests are refused with "I'm restarting"."""
        return self._draining

    @property
    def active(self) -> int:
        """Requests admitted whose stream has not yet produced its final state."""
        return self._active

    async def drain(self, grace_s: float) -> None:
        """Stop taking requests, give the running ones `grace_s` seconds to finish, then end
        every stream still running with `Failed(Busy("I'm restarting…"))`.

        Returns once every admitted stream has produced its final state (or, should a consumer
        not be pulling its stream, shortly after the abort). The caller then stops the adapters,
        which deliver those final states.
        """
        self._draining = True
        if self._active:
            logger.info("draining: %d requests running, %.1f s to finish", self._active, grace_s)
        if await self._wait_idle(grace_s):
            return
        logger.warning(
            "draining: %d requests still running after %.1f s; telling them to send again",
            self._active,
            grace_s,
        )
        self._abort.set()
        if not await self._wait_idle(_ABORT_WAIT_S):
            logger.warning("draining: %d requests did not end", self._active)

    async def _wait_idle(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # -- requests

    async def handle(self, request: Request) -> AsyncGenerator[State, None]:
        """Progress states for `request`, ending with `Finished` or `Failed`.

        While the service drains, new requests get `Failed(Busy("I'm restarting…"))` at once,
        and running ones end with it when the grace is over. `request.unsolicited` requests
        cost no quota and are refused as busy unless the bot is idle (see `Limits`).
        """
        user = request.user
        unsolicited = request.unsolicited
        # Every line logged for this request (its task) says which it was (JSON logs).
        bind(request_id=request.id, platform=user.platform)
        try:
            ticket = self._admit(request)
        except UserFacingError as error:
            repeat = self._refusals.repeat(user, error.kind)
            logger.info(
                "request %s from %s refused: %s%s",
                request.id,
                user.key,
                error.kind,
                " (again: no reply)" if repeat else "",
            )
            self._step(request.id, "final")
            yield Failed(error, request.id, repeat=repeat)
            return
        self._step(request.id, "admitted")
        job = _Job()
        active = True
        self._active += 1
        self._idle.clear()

        def done() -> None:
            # Exactly once, before the final state is handed over (a consumer need not pull
            # again): the user may send the next clip at once (a new request of theirs may hold
            # the flag), the slot goes to the next in line once no thread works for us, and a
            # drain stops waiting for us.
            nonlocal active
            if active:
                active = False
                self._step(request.id, "final")
                job.release_when_idle(ticket)
                self.limits.end(user, unsolicited=unsolicited)
                self._active -= 1
                if not self._active:
                    self._idle.set()

        try:
            async with (
                contextlib.aclosing(self._work(request, ticket, job)) as work,
                contextlib.aclosing(self._until_aborted(work)) as states,
            ):
                async for state in states:
                    if is_final(state):
                        done()
                    yield state
            if active:  # aborted by the drain
                logger.info("request %s ended by shutdown", request.id)
                done()
                yield restarting(request.id)
        except UserFacingError as error:
            logger.info("request %s failed: %s (%s)", request.id, error.kind, error.message)
            done()
            yield Failed(error, request.id)
        except Exception:
            logger.exception("request %s: internal error (error id %s)", request.id, request.id)
            done()
            yield Failed(Internal(request.id), request.id)
        finally:
            # Closed early by the consumer, or `_work` never started (aborted first).
            done()

    async def _until_aborted(
        self, states: AsyncGenerator[State, None]
    ) -> AsyncGenerator[State, None]:
        """`states`, until they end or the drain's grace is over. Each step runs in a task of
        its own so that the abort can cancel what the request is waiting on (a download, the
        queue, a worker thread's next stage) without cancelling the consumer."""
        aborted = asyncio.ensure_future(self._abort.wait())
        try:
            while not self._abort.is_set():
                step = asyncio.ensure_future(anext(states))
                interrupted = False
                try:
                    await asyncio.wait((step, aborted), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not step.done():
                        interrupted = True
                        step.cancel()
                        await asyncio.wait((step,))
                if interrupted:
                    if not step.cancelled() and step.exception() is not None:
                        logger.debug("aborted step ended with", exc_info=step.exception())
                    return
                try:
                    state = step.result()
                except StopAsyncIteration:
                    return
                yield state
        finally:
            aborted.cancel()

    def _admit(self, request: Request) -> Ticket:
        """The cheap refusals, before anything is downloaded; the place in line comes first of
        all, so the number of requests downloading is bounded too. Order matters: a refused
        request must not spend the user's quota, and an unsolicited one spends none."""
        if self._draining:
            raise Busy(_SHUTTING_DOWN)
        if isinstance(request.source, Link) and (
            refusal := link_refusal(request.source.url, extra_hosts=self._extra_hosts)
        ):
            raise UnsupportedSite(refusal)
        user, unsolicited = request.user, request.unsolicited
        self.limits.begin(user, unsolicited=unsolicited)
        ticket: Ticket | None = None
        try:
            is_link = isinstance(request.source, Link)
            ticket = self.limits.enqueue(unsolicited=unsolicited, user=user.key, link=is_link)
            if not unsolicited:
                self.limits.check(user)
        except BaseException:
            if ticket is not None:
                ticket.release()
            self.limits.end(user, unsolicited=unsolicited)
            raise
        return ticket

    async def _work(
        self, request: Request, ticket: Ticket, job: _Job
    ) -> AsyncGenerator[State, None]:
        keys = [link_key(request.source.url)] if isinstance(request.source, Link) else []
        if (known := self._remembered(keys, request.id)) is not None:
            ticket.release()
            yield self._offer(request, known, keys)
            return
        async for queued in _in_line(ticket, until=lambda: ticket.may_fetch):
            yield queued
        yield Fetching()
        data = await self.fetcher.fetch(request.source, request_id=request.id)
        self._step(request.id, "fetched")
        logger.info("request %s: fetched %d bytes", request.id, len(data))
        # Hashing 50 MB takes a while: off the loop, which serves every other chat meanwhile.
        keys.append(await asyncio.to_thread(media_key, data))
        if (known := self._remembered(keys[-1:], request.id)) is not None:
            del data
            ticket.release()
            self._remember(keys, known)
            yield self._offer(request, known, keys)
            return
        ticket.fetched()
        async for queued in _in_line(ticket, until=lambda: ticket.running):
            yield queued
        audio = await self._decode(data, job)
        self._step(request.id, "decoded")
        del data
        async with contextlib.aclosing(self._stages(audio, job, ticket)) as results:
            async for result in results:
                self._step(request.id, f"stage:{result.heard_s:g}")
                if not result.final:
                    yield Listening(result)
                    continue
                logger.info(
                    "request %s: %s %s after %.1f s of audio, %.0f ms",
                    request.id,
                    result.status,
                    result.best.episode if result.best else "-",
                    result.heard_s,
                    result.elapsed_ms,
                )
                job.release_when_idle(ticket)
                finished = Finished(result, truncated=audio.truncated or result.cut_short)
                self._remember(keys, finished)
                yield self._offer(request, finished, keys)
                return
        raise RuntimeError("identify_stages ended without a final result")

    def _offer(self, request: Request, finished: Finished, keys: list[str]) -> Finished:
        """The answer as this request shows it: with the catalogue's links and preview, and,
        when answers are kept for feedback, under this request's id. (The cache holds the
        bare answer: a repost is a new answer, with its own votes.)"""
        if self.catalogue is not None:
            finished = self.catalogue.decorate(finished)
        if self.answers is not None:
            finished = dataclasses.replace(finished, answer_id=request.id)
            try:
                self.answers.record_answer(request, finished, keys)
            except Exception:
                logger.exception("request %s: could not keep the answer for feedback", request.id)
                finished = dataclasses.replace(finished, answer_id="")
        return finished

    def _step(self, request_id: str, step: str) -> None:
        if self._on_step is None:
            return
        try:
            self._on_step(request_id, step, time.monotonic())
        except Exception:
            logger.exception("request %s: on_step(%r) failed", request_id, step)

    def _remembered(self, keys: list[str], request_id: str) -> Finished | None:
        if self.cache is None:
            return None
        for key in keys:
            if (known := self.cache.get(key, generation=self.generation)) is not None:
                logger.info("request %s: answered from the cache (%s)", request_id, key)
                return known
        return None

    def _remember(self, keys: list[str], answer: Finished) -> None:
        if self.cache is not None and keys:
            self.cache.put(keys, answer, generation=self.generation)

    async def _decode(self, data: bytes, job: _Job) -> Audio:
        matcher_settings = self.settings.matcher
        decode = functools.partial(
            decode_bytes,
            data,
            sr=self.matcher.sr,
            max_duration_s=self.settings.fetch.max_duration_s,
            timeout_s=matcher_settings.decode_timeout_s,
            ffmpeg=matcher_settings.ffmpeg,
        )
        job.future = _submit(self.executor, decode)
        try:
            # Shielded: cancelling cannot stop the thread, and must not look as if it had.
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            if job.future.cancelled():  # the pool dropped it (shutdown), nobody cancelled us
                raise Busy(_SHUTTING_DOWN) from None
            raise
        except NoAudioStreamError as e:
            raise NoAudio(str(e)) from e
        except UnreadableMediaError as e:
            raise NotMedia(str(e)) from e
        except DecodeTimeoutError as e:
            raise TooLong(_DECODE_TOO_SLOW) from e

    async def _stages(
        self, audio: Audio, job: _Job, ticket: Ticket
    ) -> AsyncGenerator[MatchResult, None]:
        """The matcher's results as it produces them, in turns: a long clip gives its match
        slot to a waiting request between windows, and goes on when its turn comes again."""
        loop = asyncio.get_running_loop()
        results: asyncio.Queue[MatchResult | _TurnOver | _StagesDone] = asyncio.Queue()
        stop = threading.Event()
        settings = self.settings.matcher
        budget = Budget(settings.budget_cpu_s, should_stop=stop.is_set)
        stages_s = settings.stages_s
        if self.limits.slot_wanted:
            # Others wait for a slot: each interim answer is a search of its own, CPU they need.
            # The first stage stays (it ends most matches early), then the whole clip.
            stages_s = stages_s[:1]
        stages = self.matcher.identify_stages(audio.samples, stages_s=stages_s, budget=budget)
        post = functools.partial(_post, loop, results.put_nowait)
        limits = self.limits

        def turn_over(turn_started: float) -> bool:
            # Read on the worker thread: a bool the loop sets, so a stale read costs one window.
            return limits.slot_wanted and time.monotonic() - turn_started >= MIN_TURN_S

        def dropped(future: asyncio.Future[Any]) -> None:
            # A pool shut down before the work started: the worker will never say it is done.
            if future.cancelled():
                results.put_nowait(_StagesDone(Busy(_SHUTTING_DOWN)))

        try:
            while True:
                job.future = _submit(
                    self.executor, functools.partial(_run_turn, stages, post, stop, turn_over)
                )
                job.future.add_done_callback(dropped)
                while not isinstance(item := await results.get(), _TurnOver):
                    if isinstance(item, _StagesDone):
                        if item.error is not None:
                            raise item.error
                        return
                    yield item
                await job.future  # the worker has let go of the generator
                ticket.requeue()
                while not ticket.running:
                    await ticket.wait_change()
        finally:
            # Closed early (the chat went away, shutdown): let the worker stop after its
            # current stage instead of matching the rest for nobody.
            stop.set()


async def _in_line(ticket: Ticket, *, until: Callable[[], bool]) -> AsyncGenerator[Queued, None]:
    """`Queued(position)` each time the ticket moves up, until `until()` holds."""
    position = -1
    while not until():
        if ticket.position != position:
            position = ticket.position
            yield Queued(position)
        await ticket.wait_change()


def _submit(executor: Executor, work: Callable[[], Any]) -> asyncio.Future[Any]:
    try:
        return asyncio.get_running_loop().run_in_executor(executor, work)
    except RuntimeError as e:  # "cannot schedule new futures after shutdown"
        raise Busy(_SHUTTING_DOWN) from e


class _Job:
    """The worker-thread future a request is waiting on, if any."""

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] | None = None

    def release_when_idle(self, ticket: Ticket) -> None:
        """Free the match slot now, or when the worker thread finishes: an abandoned request's
        thread still uses a core, and the global limit is about cores."""
        if self.future is None or self.future.done():
            ticket.release()
        else:
            self.future.add_done_callback(lambda _: ticket.release())


def _post(loop: asyncio.AbstractEventLoop, put: Callable[[Any], None], item: Any) -> None:
    """Hand `item` to the loop from a worker thread; a closed loop (shutdown) drops it."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(put, item)


def _run_turn(
    stages: Iterator[MatchResult],
    post: Callable[[MatchResult | _TurnOver | _StagesDone], None],
    stop: threading.Event,
    turn_over: Callable[[float], bool],
) -> None:
    """Runs in the matcher pool: post each result as soon as it is computed, until the last
    (`_StagesDone`) or until the turn is over (`_TurnOver`: the generator is left suspended,
    to be resumed by the next turn, on whichever thread). `stop` also ends a long clip's
    windows early (the service is closing the stream)."""
    turn_started = time.monotonic()
    try:
        for result in stages:
            post(result)
            if stop.is_set():
                break
            if not result.final and turn_over(turn_started):
                post(_TurnOver())
                return
    except Exception as error:
        # Re-raised on the loop, where the request's id is known and the user is told.
        post(_StagesDone(error))
        return
    post(_StagesDone())
