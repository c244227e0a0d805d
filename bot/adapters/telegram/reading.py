"""Reading Telegram messages: what a message carries and whether it is addressed to the bot.

Pure functions of python-telegram-bot's `Message`; nothing here talks to Telegram.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import (
    Animation,
    Audio,
    Document,
    Message,
    MessageEntity,
    Video,
    VideoNote,
    Voice,
)
from telegram.constants import ChatType

from bot.adapters.base import (
    is_media_file,
)
from bot.core.request import User
from bot.links import find_links, find_refused_links

PLATFORM = "telegram"

_DEFAULT_NAMES = {
    "video": "video.mp4",
    "video_note": "video_note.mp4",
    "animation": "animation.mp4",
    "audio": "audio.mp3",
    "voice": "voice.ogg",
    "document": "document",
}

_Media = Video | VideoNote | Animation | Audio | Voice | Document


@dataclass(frozen=True)
class Clip:
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


def clip_of(message: Message | None) -> Clip | None:
    """The clip a message carries (forwarded ones carry theirs the same way), if any."""
    if message is None:
        return None
    # Animations arrive with `document` set too: look at the specific fields first.
    for kind in ("video", "video_note", "animation", "audio", "voice"):
        media = getattr(message, kind)
        if media is not None:
            return Clip(kind, media)
    doc = message.document
    if doc is not None and _is_media_document(doc):
        return Clip("document", doc)
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
) -> Clip | str | None:
    """What to identify: the message's own clip or link, else the clip or link it replies to;
    failing both, a link the bot cannot open, so that the core tells the user why (a link
    the user asked about is never met with "send me a link").

    The bot's own messages are never a source (a reply to the bot is a new request, not a
    request about the bot's answer).
    """
    own = clip_of(message) or next(iter(links_of(message, extra_hosts=extra_hosts)), None)
    if own is not None:
        return own
    reply = message.reply_to_message
    if reply is not None and reply.from_user is not None and reply.from_user.id == bot_id:
        reply = None
    if reply is not None:
        quoted = clip_of(reply) or next(iter(links_of(reply, extra_hosts=extra_hosts)), None)
        if quoted is not None:
            return quoted
    refused = [
        url
        for source in (message, reply)
        if source is not None
        for url in find_refused_links(message_text(source), extra_hosts=extra_hosts)
    ]
    return next(iter(refused), None)


def user_of(message: Message) -> User:
    author = message.from_user
    assert author is not None  # handlers return early on messages without an author
    return User(PLATFORM, str(author.id), author.full_name)
