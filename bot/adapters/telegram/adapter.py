"""Telegram adapter: turns Bot API updates into `Request`s and renders states back as messages.

The only module that imports python-telegram-bot. It runs the PTB `Application` inside the
process's own event loop (never `run_polling`, which would take the loop over), so Telegram and
Discord share one process, one matcher pool and one set of limits. Updates become core
`Request(User, Link|Attachment, chat_key, id)`; the core's state stream comes back through
`LiveReply` as one message that quotes the user and is edited in place.

When it answers:
- private chats: a link, a video, a video note, an animation, an audio file, a voice note, a
  document that is a video or audio, or a forwarded one of these;
- groups (works with privacy mode on): a message that mentions the bot (with a clip or link of
  its own, or replying to one), a reply to the bot, or /whichepisode with a link or as a reply.

It must never let a platform type leave this module, and never send a stack trace to a user.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import html
import logging
import math
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import (
    Animation,
    Audio,
    BotCommand,
    Document,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
    Video,
    VideoNote,
    Voice,
)
from telegram.constants import ChatAction, ChatType, MessageLimit, ParseMode
from telegram.error import BadRequest, Conflict, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from bot.adapters.base import (
    STOP_GRACE_S,
    finish_work,
    is_media_file,
    say_restarting,
    stop_aware_pacing,
)
from bot.config import Settings
from bot.core.errors import FetchFailed, TooLarge, UserFacingError
from bot.core.limits import Quota
from bot.core.live import LiveReply, RetryLater
from bot.core.render import Rendered, clip_text, fit_lines, render_state
from bot.core.request import Attachment, Link, Request, User, new_request_id
from bot.core.service import Service
from bot.core.states import Failed, State, is_final
from bot.links import find_links

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
# Telegram allows about one message per second per chat and 20 per minute in a group: edits
# count, so a group reply is edited less often.
PRIVATE_EDIT_INTERVAL_S = 1.0
GROUP_EDIT_INTERVAL_S = 3.0
# The typing indicator lasts 5 s on clients. It is sent in private chats only: in a group every
# chat action counts against the 20-messages-a-minute budget the answer itself needs.
TYPING_EVERY_S = 5.0
POLL_TIMEOUT_S = 30
# Telegram's cap on a message, counted after HTML parsing (in UTF-16 code units).
MAX_TEXT_UNITS = MessageLimit.MAX_TEXT_LENGTH
MAX_TITLE_UNITS = 512
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
_DEFAULT_NAMES = {
    "video": "video.mp4",
    "video_note": "video_note.mp4",
    "animation": "animation.mp4",
    "audio": "audio.mp3",
    "voice": "voice.ogg",
    "document": "document",
}

_Media = Video | VideoNote | Animation | Audio | Voice | Document
Source = Link | Attachment


@dataclass(frozen=True)
class _Clip:
    """A downloadable clip found in a message: which field it came from and its file."""

    kind: str
    media: _Media

    @property
    def file_size(self) -> int | None:
        return self.media.file_size

    @property
    def filename(self) -> str:
        return getattr(self.media, "file_name", None) or _DEFAULT_NAMES[self.kind]

    @property
    def content_type(self) -> str | None:
        return getattr(self.media, "mime_type", None)


# ---------------------------------------------------------------------------------------------
# Reading messages: pure functions of a Message.


def clip_of(message: Message | None) -> _Clip | None:
    """The clip a message carries (forwarded ones carry theirs the same way), if any."""
    if message is None:
        return None
    # Animations arrive with `document` set too: look at the specific fields first.
    for kind in ("video", "video_note", "animation", "audio", "voice"):
        media = getattr(message, kind)
        if media is not None:
            return _Clip(kind, media)
    doc = message.document
    if doc is not None and _is_media_document(doc):
        return _Clip("document", doc)
    return None


def _is_media_document(doc: Document) -> bool:
    return is_media_file(doc.file_name, doc.mime_type)


def message_text(message: Message | None) -> str:
    if message is None:
        return ""
    return message.text or message.caption or ""


def links_of(message: Message | None, *, extra_hosts: tuple[str, ...] = ()) -> list[str]:
    """Supported or direct-media links in the text or caption (the fetcher's own rules)."""
    if message is None:
        return []
    return find_links(message_text(message), extra_hosts=extra_hosts)


def mentions_bot(message: Message, *, username: str, bot_id: int) -> bool:
    """True if the text or caption mentions the bot by @username or as a text mention."""
    types: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
    found = {**message.parse_entities(types), **message.parse_caption_entities(types)}
    wanted = f"@{username}".lower()
    for entity, text in found.items():
        if entity.type == MessageEntity.MENTION and text.lower() == wanted:
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_id:
            return True
    return False


def is_reply_to_bot(message: Message, *, bot_id: int) -> bool:
    reply = message.reply_to_message
    return bool(reply and reply.from_user and reply.from_user.id == bot_id)


def is_private(message: Message) -> bool:
    return message.chat.type == ChatType.PRIVATE


def is_caption_command(message: Message, *, username: str) -> bool:
    """`/whichepisode` (or `/whichepisode@this_bot`) as the caption of a clip: PTB's command
    handlers only read message text, so a captioned clip arrives as a plain message."""
    words = (message.caption or "").split(maxsplit=1)
    if not words:
        return False
    name, _, at = words[0].partition("@")
    return name.lower() == "/whichepisode" and at.lower() in ("", username.lower())


def addressed_to_bot(message: Message, *, username: str, bot_id: int) -> bool:
    """Whether the bot should act on a non-command message (commands route separately)."""
    return (
        is_private(message)
        or mentions_bot(message, username=username, bot_id=bot_id)
        or is_reply_to_bot(message, bot_id=bot_id)
        or is_caption_command(message, username=username)
    )


def find_target(
    message: Message, *, bot_id: int, extra_hosts: tuple[str, ...] = ()
) -> _Clip | str | None:
    """What to identify: the message's own clip or link, else the clip or link it replies to.

    The bot's own messages are never a source (a reply to the bot is a new request, not a
    request about the bot's answer).
    """
    own = clip_of(message) or next(iter(links_of(message, extra_hosts=extra_hosts)), None)
    if own is not None:
        return own
    reply = message.reply_to_message
    if reply is None or (reply.from_user is not None and reply.from_user.id == bot_id):
        return None
    return clip_of(reply) or next(iter(links_of(reply, extra_hosts=extra_hosts)), None)


# ---------------------------------------------------------------------------------------------
# Writing messages: Rendered → Telegram HTML.


def to_html(rendered: Rendered) -> str:
    """Title in bold, one escaped line per line, within Telegram's 4096 characters (a long
    compilation timeline loses whole lines from the end, with a count of what was left out).
    Telegram parses HTML; nothing user-supplied may reach it unescaped (episode titles can hold
    `<` or `&`)."""
    title = clip_text(rendered.title, MAX_TITLE_UNITS, size=_units)
    budget = MAX_TEXT_UNITS - (_units(title) + 1 if title else 0)
    lines = fit_lines(list(rendered.lines), budget, size=_units)
    parts = [f"<b>{html.escape(title)}</b>"] if title else []
    parts += [html.escape(line) for line in lines]
    return "\n".join(parts) or html.escape("…")


def _units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def render_html(state: State) -> str:
    return to_html(render_state(state))


@dataclass(frozen=True)
class _Html:
    """A rendered state for the live reply; `final` tells an edit that carries the answer."""

    text: str
    final: bool


def render_reply(state: State) -> _Html:
    return _Html(render_html(state), is_final(state))


def help_html(quota: Quota, *, max_download_mb: int) -> str:
    lines = [
        "<b>Which episode is this clip from?</b>",
        "",
        "Send me a clip — a video, a video note, a GIF, an audio file, a voice note, or forward "
        "one — or a link to a TikTok, Instagram, YouTube, X or Reddit post. I listen to it and "
        "reply with the episode and the moment it comes from.",
        "",
        "In groups: mention me in a reply to a clip, reply to one of my messages with a clip, or "
        "use /whichepisode with a link or as a reply to a clip.",
        f"Files sent on Telegram can be up to {max_download_mb} MB.",
        "",
        _quota_line(quota),
    ]
    return "\n".join(lines)


def _quota_line(quota: Quota) -> str:
    if quota.exempt:
        return "You have no request limit."
    minute_left = quota.minute_left
    return (
        f"You have {minute_left} request{'s' if minute_left != 1 else ''} left this "
        f"minute and {quota.day_left} today."
    )


def _retry_after_s(exc: RetryAfter) -> float:
    # PTB 22 warns when the int form is read; the timedelta form is the future one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def is_not_modified(exc: BadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


def is_file_too_big(exc: BadRequest) -> bool:
    return "file is too big" in exc.message.lower()


# ---------------------------------------------------------------------------------------------
# The reply: first message, then edits (the core's LiveReply decides when).


class _ReplyMessage:
    """`ReplyTarget` for one request: sends a message quoting the user's, then edits it.

    If Telegram refuses the edit that carries the answer (the progress message was deleted,
    or anything else but "not modified"), the answer goes out as a new message: the user must
    never be left looking at "Listening…".
    """

    def __init__(self, message: Message) -> None:
        self._message = message
        self._sent: Message | None = None
        self.final_shown = False

    async def send(self, rendered: _Html) -> None:
        try:
            self._sent = await self._message.reply_html(
                rendered.text,
                reply_parameters=_quote(self._message),
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except RetryAfter as exc:
            raise RetryLater(_retry_after_s(exc)) from exc
        self.final_shown = rendered.final

    async def edit(self, rendered: _Html) -> None:
        if self._sent is None:
            await self.send(rendered)
            return
        try:
            await self._sent.edit_text(
                rendered.text,
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except RetryAfter as exc:
            raise RetryLater(_retry_after_s(exc)) from exc
        except BadRequest as exc:
            # Two states can render alike; Telegram refuses the identical edit. Nothing is lost.
            if is_not_modified(exc):
                pass
            elif rendered.final:
                logger.warning(
                    "telegram: the answer could not replace the progress message (%s); sending "
                    "it as a new message",
                    exc.message,
                )
                await self.send(rendered)
                return
            else:
                raise
        self.final_shown = rendered.final


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
    ) -> None:
        self._intervals_s = (private_interval_s, group_interval_s)
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
        """The command menu is a convenience: failing to set it must not keep the bot down."""
        try:
            await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        except TelegramError:
            logger.warning("telegram: could not set the command menu", exc_info=True)

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
        builder = ApplicationBuilder().token(self._tg.token).rate_limiter(AIORateLimiter())
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
                self._service.quota(_user(message)),
                max_download_mb=self._tg.max_download_bytes // (1024 * 1024),
            ),
            reply_parameters=_quote(message),
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

    async def _answer(self, message: Message, target: _Clip | str) -> None:
        """Identify `target` for the author of `message`, replying live to `message`."""
        request_id = new_request_id()
        reply = _ReplyMessage(message)
        too_large = self._too_large(target)
        if too_large is not None:
            # Checked before any download (Telegram would refuse it) and before the limits: a
            # file nobody can fetch costs no quota.
            logger.info("telegram: request %s refused: file over the download cap", request_id)
            try:
                await reply.send(render_reply(Failed(too_large, request_id)))
            except (TelegramError, RetryLater):
                logger.warning("telegram: could not reply to request %s", request_id)
            return
        request = Request(
            user=_user(message),
            source=self._source(message, target),
            chat_key=f"{PLATFORM}:{message.chat.id}",
            id=request_id,
        )
        logger.info(
            "telegram: request %s from %s in %s: %s",
            request_id,
            request.user.key,
            request.chat_key,
            target.kind if isinstance(target, _Clip) else "link",
        )
        # Its own task, tracked, so that stop() can wait for it and cancel it without touching
        # PTB's update-processing task.
        work = asyncio.create_task(self._reply_live(message, request, reply))
        self._work.add(work)
        work.add_done_callback(self._work.discard)
        await asyncio.wait({work})

    async def _reply_live(self, message: Message, request: Request, reply: _ReplyMessage) -> None:
        private = is_private(message)
        interval_s = self._intervals_s[0] if private else self._intervals_s[1]
        typing = asyncio.create_task(self._keep_typing(message)) if private else None
        live = LiveReply(reply, interval_s, sleep=stop_aware_pacing(interval_s, self._stopped))
        try:
            await live.run(self._service.handle(request), render_reply)
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

    def _too_large(self, target: _Clip | str) -> UserFacingError | None:
        limit = self._tg.max_download_bytes
        if isinstance(target, _Clip) and target.file_size is not None and target.file_size > limit:
            return _too_large_error(limit)
        return None

    def _source(self, message: Message, target: _Clip | str) -> Source:
        if isinstance(target, str):
            return Link(target)
        return Attachment(
            filename=target.filename,
            size_bytes=target.file_size,
            content_type=target.content_type,
            read=self._reader(message, target),
        )

    def _reader(self, message: Message, clip: _Clip) -> Callable[[], Awaitable[bytes]]:
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
                with contextlib.suppress(TelegramError):
                    await message.get_bot().send_chat_action(chat_id, ChatAction.TYPING)
            await asyncio.sleep(TYPING_EVERY_S)

    async def _hint(self, message: Message, text: str) -> None:
        with contextlib.suppress(TelegramError):
            await message.reply_html(
                html.escape(text),
                reply_parameters=_quote(message),
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


def _user(message: Message) -> User:
    author = message.from_user
    assert author is not None  # handlers return early on messages without an author
    return User(PLATFORM, str(author.id), author.full_name)


def _quote(message: Message) -> ReplyParameters:
    """Reply parameters that quote `message`, still sending if it was deleted meanwhile."""
    return ReplyParameters(message.message_id, allow_sending_without_reply=True)
