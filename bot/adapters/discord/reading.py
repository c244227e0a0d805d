"""Reading Discord messages: which attachments are clips, the links, who asks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from bot.adapters.base import (
    is_media_file,
)
from bot.core.errors import FetchFailed
from bot.core.request import Attachment, Link, User
from bot.links import find_links, find_refused_links

logger = logging.getLogger(__name__)

DOWNLOAD_FAILED = "I couldn't download that file from Discord; try again in a minute."


def is_media_attachment(attachment: discord.Attachment) -> bool:
    return is_media_file(attachment.filename, attachment.content_type)


def attachment2source(attachment: discord.Attachment) -> Attachment:
    return Attachment(
        filename=attachment.filename,
        size_bytes=attachment.size,
        content_type=attachment.content_type,
        read=_reader(attachment),
    )


def _reader(attachment: discord.Attachment) -> Callable[[], Awaitable[bytes]]:
    """`attachment.read`, with a CDN failure (expired link, 5xx, connection reset) turned into
    the core's FetchFailed: the user hears "couldn't download", not "something went wrong"."""

    async def read() -> bytes:
        try:
            return await attachment.read()
        except discord.HTTPException as error:
            logger.warning("attachment %s: Discord CDN answered %s", attachment.id, error.status)
            raise FetchFailed(DOWNLOAD_FAILED) from error
        except aiohttp.ClientError as error:
            logger.warning("attachment %s: download failed: %r", attachment.id, error)
            raise FetchFailed(DOWNLOAD_FAILED) from error

    return read


def message_sources(
    message: discord.Message, *, extra_hosts: tuple[str, ...] = ()
) -> list[Link | Attachment]:
    """Media attachments first (no site to fail), then supported or direct-media links."""
    sources: list[Link | Attachment] = [
        attachment2source(a) for a in message.attachments if is_media_attachment(a)
    ]
    links = find_links(message.content or "", extra_hosts=extra_hosts)
    return sources + [Link(url) for url in links]


def refused_links(message: discord.Message, *, extra_hosts: tuple[str, ...] = ()) -> list[Link]:
    """Links in the message the bot cannot open: for someone who asked about one, the core
    then says why, instead of the bot saying "send me a link"."""
    return [Link(url) for url in find_refused_links(message.content or "", extra_hosts=extra_hosts)]


def discord_user(user: discord.abc.User) -> User:
    return User(platform="discord", id=str(user.id), name=user.display_name)
