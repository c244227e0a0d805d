"""Writing Telegram messages: a rendered state as escaped HTML within Telegram's limits, and
the one reply a request edits in place.
"""

from __future__ import annotations

import datetime as dtm
import html
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
)
from telegram.constants import MessageLimit, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.ext import ExtBot
from telegram.warnings import PTBDeprecationWarning

from bot.adapters.base import action_payload
from bot.adapters.telegram.pacing import PROGRESS, URGENT, Pace
from bot.core.help import render_help
from bot.core.limits import Quota
from bot.core.live import RetryLater, TransientFailure, never_overtaken
from bot.core.render import ActionButton, LinkButton, Rendered, clip_text, fit_lines, render_state
from bot.core.states import State, is_final
from bot.links import supported_sites

logger = logging.getLogger(__name__)

# Telegram's cap on a message, counted after HTML parsing (in UTF-16 code units).
MAX_TEXT_UNITS = MessageLimit.MAX_TEXT_LENGTH
MAX_TITLE_UNITS = 512
# Longer button labels are cut by the clients anyway; ours are short.
MAX_BUTTON_LABEL = 64


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
    links = list(rendered.links) + [""] * len(lines)
    parts += [_linked(line, url) for line, url in zip(lines, links, strict=False)]
    return "\n".join(parts) or html.escape("…")


def _linked(line: str, url: str) -> str:
    """An escaped line, as a link when it has one (a compilation's scene). A line cut short by
    `fit_lines` ("… and 3 more") is never linked: its links run out before it does."""
    if not url or line.startswith("… and "):
        return html.escape(line)
    return f'<a href="{html.escape(url, quote=True)}">{html.escape(line)}</a>'


def to_keyboard(rendered: Rendered) -> InlineKeyboardMarkup | None:
    """The reply's buttons as an inline keyboard: link buttons open the watch page in one row,
    action buttons (callback data `action_payload`) in the row below."""
    links = [
        InlineKeyboardButton(clip_text(b.label, MAX_BUTTON_LABEL), url=b.url)
        for b in rendered.buttons
        if isinstance(b, LinkButton)
    ]
    actions = [
        InlineKeyboardButton(clip_text(b.label, MAX_BUTTON_LABEL), callback_data=action_payload(b))
        for b in rendered.buttons
        if isinstance(b, ActionButton)
    ]
    rows = [row for row in (links, actions) if row]
    return InlineKeyboardMarkup(rows) if rows else None


def _units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def render_html(state: State) -> str:
    return to_html(render_state(state))


@dataclass(frozen=True)
class Html:
    """A rendered state for the live reply; `final` tells an edit that carries the answer,
    `keyboard` the buttons under it, `preview` the path of a still of the moment."""

    text: str
    final: bool
    keyboard: InlineKeyboardMarkup | None = None
    preview: str | None = None


def render_reply(state: State) -> Html:
    rendered = render_state(state)
    return Html(to_html(rendered), is_final(state), to_keyboard(rendered), rendered.preview)


# How people ask on Telegram: /help's own part, beside the core's shared words.
def _how_to(max_download_mb: int) -> list[str]:
    return [
        "Send me a clip (a video, a video note, a GIF, an audio file or a voice note), forward "
        f"one, or send a link to a {supported_sites()} post.",
        "In groups: mention me in a reply to a clip, reply to one of my messages with a clip, "
        "or use /whichepisode with a link or as a reply to a clip.",
        f"Files sent on Telegram can be up to {max_download_mb} MB.",
    ]


def help_html(quota: Quota, *, max_download_mb: int) -> str:
    """/help and /start: the core's help, with the user's quota, as Telegram HTML."""
    rendered = render_help(quota, how_to=_how_to(max_download_mb))
    return "\n".join(
        [f"<b>{html.escape(rendered.title)}</b>", ""]
        + [html.escape(line) for line in rendered.lines]
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


class ReplyMessage:
    """`ReplyTarget` for one request: sends a message quoting the user's, then edits it.

    If Telegram refuses the edit that carries the answer (the progress message was deleted,
    or anything else but "not modified"), the answer goes out as a new message: the user must
    never be left looking at "Listening…".
    """

    def __init__(self, message: Message) -> None:
        self._message = message
        self._sent: Message | None = None
        self.final_shown = False

    async def send(self, rendered: Html) -> None:
        try:
            self._sent = await self._message.reply_html(
                rendered.text,
                reply_markup=rendered.keyboard,
                reply_parameters=quote_of(self._message),
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except RetryAfter as exc:
            raise RetryLater(_retry_after_s(exc)) from exc
        except BadRequest:
            raise
        except NetworkError as exc:  # 5xx, a dropped connection, a timeout: worth a retry
            raise TransientFailure(repr(exc)) from exc
        self.final_shown = rendered.final

    async def edit(
        self, rendered: Html, *, overtaken: Callable[[], bool] = never_overtaken
    ) -> None:
        if self._sent is None:
            await self.send(rendered)
            return
        pace = Pace(URGENT) if rendered.final else Pace(PROGRESS, overtaken)
        try:
            await ext_bot_of(self._sent).edit_message_text(
                rendered.text,
                chat_id=self._sent.chat_id,
                message_id=self._sent.message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=rendered.keyboard,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                rate_limit_args=pace,
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
        except NetworkError as exc:  # 5xx, a dropped connection, a timeout: worth a retry
            raise TransientFailure(repr(exc)) from exc
        self.final_shown = rendered.final


def ext_bot_of(message: Message) -> ExtBot[Any]:
    """The application's bot, which takes `rate_limit_args` (plain `Bot` methods do not)."""
    bot = message.get_bot()
    if not isinstance(bot, ExtBot):
        raise TypeError("the Telegram adapter runs on telegram.ext's ExtBot")
    return bot


def quote_of(message: Message) -> ReplyParameters:
    """Reply parameters that quote `message`, still sending if it was deleted meanwhile."""
    return ReplyParameters(message.message_id, allow_sending_without_reply=True)
