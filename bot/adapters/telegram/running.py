"""Running the Telegram side: the PTB application, its handlers, and one live reply a request.

This package is the only place that imports python-telegram-bot (`reading` reads messages,
`writing` writes them, this module runs them). It runs the PTB `Application` inside the
process's own event loop (never `run_polling`, which would take the loop over), so Telegram and
Discord share one process, one matcher pool and one set of limits. Updates become core
`Request(User, Link|Attachment, chat_key, id)`; the core's state stream comes back through
`LiveReply` as one message that quotes the user and is edited in place.

When it answers:
- private chats: a link, a video, a video note, an animation, an audio file, a voice note, a
  document that is a video or audio, or a forwarded one of these;
- groups (works with privacy mode on): a message that mentions the bot (with a clip or link of
  its own, or replying to one), a reply to the bot, or /whichepisode with a link or as a reply.

It must never let a platform type leave this package, and never send a stack trace to a user.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import (
    BotCommand,
    LinkPreviewOptions,
    Message,
    Update,
)
from telegram.constants import ChatAction
from telegram.error import BadRequest, Conflict, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.adapters.base import (
    STOP_GRACE_S,
    finish_work,
    say_restarting,
    stop_aware_pacing,
    without_repeated_refusals,
)
from bot.adapters.telegram.pacing import TYPING, Pace, PriorityRateLimiter
from bot.adapters.telegram.reading import (
    PLATFORM,
    Clip,
    addressed_to_bot,
    find_target,
    is_private,
    user_of,
)
from bot.adapters.telegram.writing import (
    ReplyMessage,
    ext_bot_of,
    help_html,
    is_file_too_big,
    quote_of,
    render_reply,
)
from bot.config import Settings
from bot.core.errors import FetchFailed, TooLarge, UserFacingError
from bot.core.help import DESCRIPTION, SHORT_DESCRIPTION
from bot.core.live import LiveReply, Overtaken, RetryLater, TransientFailure
from bot.core.request import Attachment, Link, Request, Source, new_request_id
from bot.core.service import Service
from bot.core.states import Failed

logger = logging.getLogger(__name__)

# Telegram allows about one message per second per chat and 20 per minute in a group: edits
# count, so a group reply is edited less often.
PRIVATE_EDIT_INTERVAL_S = 1.0
GROUP_EDIT_INTERVAL_S = 3.0
# The typing indicator lasts 5 s on clients. It is sent in private chats only: in a group every
# chat action counts against the 20-messages-a-minute budget the answer itself needs.
TYPING_EVERY_S = 5.0
POLL_TIMEOUT_S = 30
# A restart overlaps the old process for a moment, so Telegram's "Conflict" (another getUpdates
# on this token) is fatal only when it lasts; a quiet gap longer than PTB's longest back-off
# (30 s) means polling went through in between.
CONFLICT_FATAL_S = 60.0
CONFLICT_GAP_S = 35.0
# PTB names the task that long-polls getUpdates; polling dies with it (e.g. on InvalidToken).
_POLLING_TASK_NAME = "Updater:start_polling:polling_task"
# At stop PTB calls getUpdates once more to mark what it fetched as read, and logs a failure of
# that call with a stack trace. It is harmless (at worst an update comes again after the
# restart) and common on a busy machine or a slow network: one warning line is enough.
_UPDATER_LOGGER = "telegram.ext.Updater"
_CLEANUP_FAILED = "Error while calling `get_updates` one more time"

COMMANDS = (
    ("whichepisode", "Which episode is this clip from? Reply to a clip or add a link"),
    ("help", "What to send and how many requests you have left"),
    ("start", "What this bot does"),
)


class _QuietShutdownPoll(logging.Filter):
    """Turns PTB's stack trace for a failed last getUpdates at stop into one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_CLEANUP_FAILED):
            error = record.exc_info[1] if record.exc_info else None
            record.msg = "telegram: could not mark the last updates as read at stop (%r)"
            record.args = (error,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_QUIET_SHUTDOWN_POLL = _QuietShutdownPoll()
logging.getLogger(_UPDATER_LOGGER).addFilter(_QUIET_SHUTDOWN_POLL)


# ---------------------------------------------------------------------------------------------
# The adapter.


class TelegramAdapter:
    """Runs the Telegram side of the bot inside the caller's event loop.

    `settings`: the whole `Settings` (reads `.telegram` and the fetcher's `extra_hosts`);
    `service` answers requests and tells /help's remaining quota. The edit
    intervals default to what Telegram tolerates; tests lower them to see every state.
    `rate_limiter` paces every Bot API call, most important first (tests slow it down).

    `fatal` is set when polling has died for good after start (the token was revoked, or
    another process keeps polling with it): the process serves nothing here any more, and
    `bot.app.run` exits when every adapter is in that state.
    """

    def __init__(
        self,
        settings: Settings,
        service: Service,
        *,
        private_interval_s: float = PRIVATE_EDIT_INTERVAL_S,
        group_interval_s: float = GROUP_EDIT_INTERVAL_S,
        stop_grace_s: float = STOP_GRACE_S,
        conflict_fatal_s: float = CONFLICT_FATAL_S,
        rate_limiter: PriorityRateLimiter | None = None,
    ) -> None:
        self._intervals_s = (private_interval_s, group_interval_s)
        self.rate_limiter = rate_limiter or PriorityRateLimiter()
        self._stop_grace_s = stop_grace_s
        self._conflict_fatal_s = conflict_fatal_s
        self._tg = settings.telegram
        self._extra_hosts = tuple(settings.fetch.extra_hosts)
        self._service = service
        self._stack: contextlib.AsyncExitStack | None = None
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self.fatal = asyncio.Event()
        self._stopped = asyncio.Event()  # set when stop() begins: pacing waits end at once
        self._work: set[asyncio.Task[None]] = set()
        self._typing_at: dict[int, float] = {}
        self._conflicts: tuple[float, float] | None = None  # first and latest of a streak

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        app = self._build()
        stack = contextlib.AsyncExitStack()
        # `async with application`: initialize now, shutdown when the stack closes.
        await stack.enter_async_context(app)
        try:
            await self._set_commands(app)
            await app.start()
            stack.push_async_callback(app.stop)
            await app.updater.start_polling(  # type: ignore[union-attr]
                timeout=POLL_TIMEOUT_S,
                allowed_updates=[Update.MESSAGE],
                error_callback=self._on_polling_error,
            )
        except BaseException:
            await stack.aclose()
            raise
        self._app, self._stack = app, stack
        self._watch_polling()
        logger.info("telegram: polling as @%s", app.bot.username)

    @staticmethod
    async def _set_commands(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """The command menu and the profile texts (what a new user sees before the first
        message) are a convenience: failing to set them must not keep the bot down."""
        bot = app.bot
        calls: dict[str, Callable[[], Awaitable[bool]]] = {
            "command menu": lambda: bot.set_my_commands([BotCommand(n, t) for n, t in COMMANDS]),
            "description": lambda: bot.set_my_description(DESCRIPTION),
            "short description": lambda: bot.set_my_short_description(SHORT_DESCRIPTION),
        }
        for what, call in calls.items():
            try:
                await call()
            except TelegramError as error:
                logger.warning("telegram: could not set the %s (%r)", what, error)

    async def stop(self) -> None:
        """Stop polling, give running requests `stop_grace_s` to deliver their last state (the
        core's drain ends them with "I'm restarting"), cancel the rest, close the HTTP client.

        Bounded on its own: `stop_grace_s`, then a few seconds for what was cancelled to say
        "I'm restarting". Once the stop begins, edits are no longer paced, so after a drain the
        last replies go out at once. If the caller's timeout is shorter, the client still closes.
        """
        app, stack = self._app, self._stack
        self._app = self._stack = None
        if stack is None or app is None:
            return
        self._stopped.set()
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            await finish_work(self._work, self._stop_grace_s, "telegram")
        except TelegramError as exc:  # polling had already died (see `_watch_polling`)
            logger.warning("telegram: polling ended with %r", exc)
        finally:
            # Even when the caller's own timeout cuts the wait short: PTB's stop() waits for
            # every handler, so nothing may be left running, and the HTTP client must close.
            for task in list(self._work):
                task.cancel()
            await stack.aclose()
        logger.info("telegram: stopped")

    def _watch_polling(self) -> None:
        """PTB ends its polling task on InvalidToken (token revoked after start) and tells no
        one until `stop()`: watch the task so that `fatal` says so at once."""
        task = next((t for t in asyncio.all_tasks() if t.get_name() == _POLLING_TASK_NAME), None)
        if task is None:
            logger.warning("telegram: cannot watch the polling task; fatal errors show at stop")
            return

        def ended(task: asyncio.Task[Any]) -> None:
            if self._stopped.is_set() or task.cancelled():
                return
            logger.error(
                "telegram: polling stopped for good (%r); the Telegram bot is off",
                task.exception(),
            )
            self.fatal.set()

        task.add_done_callback(ended)

    def _on_polling_error(self, exc: TelegramError) -> None:
        """PTB retries every polling error forever. A Conflict (another process polls with
        this token) that lasts `conflict_fatal_s` is fatal: this process gets no updates."""
        if not isinstance(exc, Conflict):
            logger.warning("telegram: polling failed, retrying: %r", exc)
            return
        now = time.monotonic()
        first, latest = self._conflicts or (now, now)
        if now - latest > CONFLICT_GAP_S:
            first = now
        self._conflicts = (first, now)
        if now - first >= self._conflict_fatal_s and not self.fatal.is_set():
            logger.error(
                "telegram: another process keeps polling with this token (%s); the Telegram "
                "bot is off",
                exc.message,
            )
            self.fatal.set()
        else:
            logger.warning("telegram: polling conflict (%s); retrying", exc.message)

    def _build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        if not self._tg.token:
            raise RuntimeError("TELEGRAM_BOT_TOKEN is not set")
        builder = ApplicationBuilder().token(self._tg.token).rate_limiter(self.rate_limiter)
        if self._tg.api_base:
            builder = builder.base_url(self._tg.api_base)
        if self._tg.file_base:
            builder = builder.base_file_url(self._tg.file_base)
        # Each request waits on fetch and matching: handle updates concurrently, or one slow
        # clip would hold up every other user. The core's limits bound the real work.
        app = builder.concurrent_updates(True).build()
        app.add_handler(CommandHandler(["start", "help"], self._on_help))
        app.add_handler(CommandHandler("whichepisode", self._on_whichepisode))
        app.add_handler(
            MessageHandler(filters.UpdateType.MESSAGE & ~filters.COMMAND, self._on_message)
        )
        app.add_error_handler(self._on_error)
        return app

    # -- handlers -------------------------------------------------------------------------------

    async def _on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        await message.reply_html(
            help_html(
                self._service.quota(user_of(message)),
                max_download_mb=self._tg.max_download_bytes // (1024 * 1024),
            ),
            reply_parameters=quote_of(message),
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        )

    async def _on_whichepisode(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        target = find_target(message, bot_id=context.bot.id, extra_hosts=self._extra_hosts)
        if target is None:
            await self._hint(
                message, "Use /whichepisode with a link, or reply to a clip with /whichepisode."
            )
            return
        await self._answer(message, target)

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.from_user is None:
            return
        bot = context.bot
        if not addressed_to_bot(message, username=bot.username, bot_id=bot.id):
            return
        target = find_target(message, bot_id=bot.id, extra_hosts=self._extra_hosts)
        if target is None:
            await self._hint(
                message, _NOTHING_TO_DO_PRIVATE if is_private(message) else _NOTHING_TO_DO_GROUP
            )
            return
        await self._answer(message, target)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        logger.error("telegram: unhandled error", exc_info=context.error)

    # -- answering ------------------------------------------------------------------------------

    async def _answer(self, message: Message, target: Clip | str) -> None:
        """Identify `target` for the author of `message`, replying live to `message`."""
        request_id = new_request_id()
        reply = ReplyMessage(message)
        too_large = self._too_large(target)
        if too_large is not None:
            # Checked before any download (Telegram would refuse it) and before the limits: a
            # file nobody can fetch costs no quota.
            logger.info("telegram: request %s refused: file over the download cap", request_id)
            try:
                await reply.send(render_reply(Failed(too_large, request_id)))
            except (TelegramError, RetryLater, TransientFailure):
                logger.warning("telegram: could not reply to request %s", request_id)
            return
        request = Request(
            user=user_of(message),
            source=self._source(message, target),
            chat_key=f"{PLATFORM}:{message.chat.id}",
            id=request_id,
        )
        logger.info(
            "telegram: request %s from %s in %s: %s",
            request_id,
            request.user.key,
            request.chat_key,
            target.kind if isinstance(target, Clip) else "link",
        )
        # Its own task, tracked, so that stop() can wait for it and cancel it without touching
        # PTB's update-processing task.
        work = asyncio.create_task(self._reply_live(message, request, reply))
        self._work.add(work)
        work.add_done_callback(self._work.discard)
        await asyncio.wait({work})

    async def _reply_live(self, message: Message, request: Request, reply: ReplyMessage) -> None:
        private = is_private(message)
        interval_s = self._intervals_s[0] if private else self._intervals_s[1]
        typing = asyncio.create_task(self._keep_typing(message)) if private else None
        live = LiveReply(reply, interval_s, sleep=stop_aware_pacing(interval_s, self._stopped))
        try:
            states = without_repeated_refusals(self._service.handle(request), request.id)
            await live.run(states, render_reply)
        except asyncio.CancelledError:
            # Cut off by stop(): the core did not get to say so; say it ourselves.
            if not reply.final_shown:
                await say_restarting(
                    reply, render_reply, request.id, platform_errors=(TelegramError,)
                )
            raise
        except Exception:
            logger.exception("telegram: reply for request %s failed", request.id)
        finally:
            if typing is not None:
                typing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await typing

    def _too_large(self, target: Clip | str) -> UserFacingError | None:
        limit = self._tg.max_download_bytes
        if isinstance(target, Clip) and target.file_size is not None and target.file_size > limit:
            return _too_large_error(limit)
        return None

    def _source(self, message: Message, target: Clip | str) -> Source:
        if isinstance(target, str):
            return Link(target)
        return Attachment(
            filename=target.filename,
            size_bytes=target.file_size,
            content_type=target.content_type,
            read=self._reader(message, target),
        )

    def _reader(self, message: Message, clip: Clip) -> Callable[[], Awaitable[bytes]]:
        limit = self._tg.max_download_bytes

        async def read() -> bytes:
            try:
                file = await message.get_bot().get_file(clip.media.file_id)
                return bytes(await file.download_as_bytearray())
            except BadRequest as exc:
                if is_file_too_big(exc):
                    raise _too_large_error(limit) from exc
                logger.warning("telegram: download of %s refused: %s", clip.kind, exc.message)
                raise FetchFailed(_DOWNLOAD_FAILED) from exc
            except TelegramError as exc:
                # Telegram's own words go to the log, never to the user.
                logger.warning("telegram: download of %s failed: %r", clip.kind, exc)
                raise FetchFailed(_DOWNLOAD_FAILED) from exc

        return read

    async def _keep_typing(self, message: Message) -> None:
        """Show "typing…" until the answer is in, at most once per `TYPING_EVERY_S` per chat
        however many requests run there; losing an indicator is harmless."""
        chat_id = message.chat.id
        while True:
            now = time.monotonic()
            if now - self._typing_at.get(chat_id, -math.inf) >= TYPING_EVERY_S:
                self._typing_at = {
                    k: t for k, t in self._typing_at.items() if now - t < TYPING_EVERY_S
                }
                self._typing_at[chat_id] = now
                # Last in line, and dropped if the line is so long that it would come too late.
                late = functools.partial(_later_than, now + TYPING_EVERY_S)
                with contextlib.suppress(TelegramError, Overtaken):
                    await ext_bot_of(message).send_chat_action(
                        chat_id, ChatAction.TYPING, rate_limit_args=Pace(TYPING, late)
                    )
            await asyncio.sleep(TYPING_EVERY_S)

    async def _hint(self, message: Message, text: str) -> None:
        with contextlib.suppress(TelegramError):
            await message.reply_html(
                html.escape(text),
                reply_parameters=quote_of(message),
            )


_NOTHING_TO_DO_PRIVATE = (
    "Send me a video, a voice note, a GIF or a link to a post, and I'll tell you which episode "
    "it's from. /help shows more."
)
_NOTHING_TO_DO_GROUP = "Reply to a clip and mention me, or use /whichepisode with a link."
_DOWNLOAD_FAILED = "Couldn't download that file from Telegram. Please try again."


def _too_large_error(limit_bytes: int) -> UserFacingError:
    limit_mb = limit_bytes // (1024 * 1024)
    return TooLarge(
        f"That file is too big: bots can only download files up to {limit_mb} MB from Telegram. "
        "Send a shorter clip or a link to the post instead."
    )


def _later_than(deadline: float) -> bool:
    return time.monotonic() > deadline
