"""What every front door shares: the adapter protocol and the plumbing around a live reply.

An adapter turns platform updates into the core's `Request`s and shows the states the core
yields through a `LiveReply`; what that takes besides the platform's own calls is the same
everywhere and lives here once: which files are clips, pacing that ends when the bot stops,
finishing running replies at stop, and the last "I'm restarting" a cut-off reply gets.

Never imports a chat library: platform types stay in their adapter's package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from bot.core.live import ReplyTarget, RetryLater, TransientFailure, never_overtaken
from bot.core.render import ACTIONS, Action, ActionButton
from bot.core.service import restarting
from bot.core.states import (
    Failed,
    Finished,
    Listening,
    State,
    is_final,
    may_post_unasked,
    may_show_unasked,
)

logger = logging.getLogger(__name__)

R = TypeVar("R")

# How long stop() lets running requests deliver their last state (the core ends them with "I'm
# restarting" while it drains) before cancelling what is left.
STOP_GRACE_S = 10.0
# How long a cut-off reply may take to say "I'm restarting": the process is going away.
RESTARTING_REPLY_TIMEOUT_S = 3.0
# Files worth decoding: anything a user would call a clip, by MIME type or by name.
MEDIA_FILE_SUFFIXES = (
    ".mp4",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".m4v",
    ".3gp",
    ".mpeg",
    ".mpg",
    ".m4a",
    ".mp3",
    ".ogg",
    ".oga",
    ".opus",
    ".wav",
    ".flac",
    ".aac",
)


class Adapter(Protocol):
    """A front door, constructed as `Adapter(settings, service)`. `fatal` is set when it can
    no longer serve (a revoked token, say): when every adapter's is, the bot exits 1 so that
    its supervisor restarts it."""

    fatal: asyncio.Event

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# The payload of an answer's action button: `cw1:<action>:<answer id>`, the same on every
# platform (Telegram caps callback data at 64 bytes; Discord custom ids at 100 characters).
# It holds everything a press needs, so buttons keep working after a restart.
ACTION_PREFIX = "cw1"


def action_payload(button: ActionButton) -> str:
    return f"{ACTION_PREFIX}:{button.action}:{button.answer_id}"


def parse_action_payload(payload: str) -> tuple[Action, str] | None:
    """`(action, answer id)` from a button's payload, or None for anything else (a button of
    an older version, or someone's forged callback data)."""
    prefix, _, rest = payload.partition(":")
    action, _, answer_id = rest.partition(":")
    if prefix != ACTION_PREFIX or action not in ACTIONS or not answer_id.isalnum():
        return None
    return action, answer_id  # type: ignore[return-value]


def is_media_file(filename: str | None, content_type: str | None) -> bool:
    """Whether an uploaded file is a clip: a video or audio MIME type, or a clip's file name."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime.startswith(("video/", "audio/")):
        return True
    return (filename or "").lower().endswith(MEDIA_FILE_SUFFIXES)


def stop_aware_pacing(
    interval_s: float, stopped: asyncio.Event
) -> Callable[[float], Awaitable[None]]:
    """LiveReply's sleep. Waits between edits end when `stopped` is set: only last states are
    left to show, and the caller's stop timeout is short. A longer wait is one the platform
    asked for (429) and is kept."""

    async def sleep(delay_s: float) -> None:
        if delay_s > interval_s:
            await asyncio.sleep(delay_s)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await stopped.wait()

    return sleep


async def finish_work(tasks: set[asyncio.Task[Any]], grace_s: float, platform: str) -> None:
    """Wait up to `grace_s` for `tasks` (a live set: requests may still join it, finished ones
    leave it), then cancel what is left and wait for it to unwind."""
    deadline = time.monotonic() + grace_s
    while tasks and (left := deadline - time.monotonic()) > 0:
        await asyncio.wait(set(tasks), timeout=left)
    pending = set(tasks)
    if pending:
        logger.warning(
            "%s: cancelling %d request(s) still running at shutdown", platform, len(pending)
        )
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=grace_s)


async def say_restarting(
    target: ReplyTarget[R],
    render: Callable[[State], R],
    request_id: str,
    *,
    platform_errors: tuple[type[BaseException], ...],
) -> None:
    """Best effort, briefly: tell a reply cut off by stop() to send the clip again, in the
    core's own words. `platform_errors` are what the target may raise when it cannot."""
    try:
        async with asyncio.timeout(RESTARTING_REPLY_TIMEOUT_S):
            await target.edit(render(restarting(request_id)), overtaken=never_overtaken)
    except (RetryLater, TransientFailure, TimeoutError):
        logger.info("request %s: could not tell the user about the restart", request_id)
    except platform_errors:
        logger.info("request %s: could not tell the user about the restart", request_id)


class QuietScan:
    """For a message the bot scanned on its own: live but quiet. No "Getting the clip…" or
    "Listening…" for someone who did not ask, and no "not found", "unsure", "busy" or error
    either. The reply appears with the first interim answer that names an episode (the
    core's `may_show_unasked`) and follows the states from there, like any live reply; a
    final state the core's `may_post_unasked` does not allow is held back, and `retract` then
    says the reply already posted must be taken back, so the chat ends as if nothing happened.
    """

    def __init__(self, request_id: str) -> None:
        self._request_id = request_id
        self.retract = False

    async def states(self, states: AsyncGenerator[State, None]) -> AsyncGenerator[State, None]:
        showing = False
        final: State | None = None
        try:
            async for state in states:
                if is_final(state):
                    final = state
                    break
                showing = showing or may_show_unasked(state)
                if showing and isinstance(state, Listening):
                    yield state
        finally:
            await states.aclose()
        if final is not None and may_post_unasked(final):
            yield final
            return
        self.retract = showing
        logger.info("request %s: unasked scan stays quiet (%s)", self._request_id, _outcome(final))


async def without_repeated_refusals(
    states: AsyncGenerator[State, None], request_id: str
) -> AsyncGenerator[State, None]:
    """For a chat reply: a refusal the user was given moments ago is not posted again (a flood
    of one user's messages gets one "slow down", not one per message)."""
    try:
        async for state in states:
            if isinstance(state, Failed) and state.repeat:
                logger.info("request %s: repeated refusal stays quiet", request_id)
                return
            yield state
    finally:
        await states.aclose()


def _outcome(state: State | None) -> str:
    if isinstance(state, Failed):
        return state.error.kind
    if isinstance(state, Finished):
        return state.result.status
    return "no answer"
