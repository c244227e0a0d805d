"""What a chat adapter hands the core: who asks, what to look at, where to answer.

Platform types never get past the adapter: it copies what the core needs into these, and
supplies `Attachment.read` as a closure over its own download call.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    """`platform` is "telegram" or "discord"; `id` the platform's user id as text."""

    platform: str
    id: str
    name: str

    @property
    def key(self) -> str:
        """`telegram:123`: the key for limits and for the allowlist in the config."""
        return f"{self.platform}:{self.id}"


@dataclass(frozen=True)
class Link:
    url: str


@dataclass(frozen=True)
class Attachment:
    """A file sent in chat.

    `read` downloads it; the fetcher calls it only after `size_bytes` (when known) passed the
    size check, so an oversized upload is refused without being downloaded.
    """

    filename: str
    size_bytes: int | None
    content_type: str | None
    read: Callable[[], Awaitable[bytes]]


Source = Link | Attachment


@dataclass(frozen=True)
class Request:
    """One clip to identify. `chat_key` ("telegram:-100123") is where the answer goes; `id` is
    the correlation id in every log line and in error messages.

    `unsolicited`: nobody asked (a channel scan). Such a request costs no quota, is served only
    when the bot is otherwise idle (else refused as busy), and never blocks the user's own
    explicit request as "one at a time".
    """

    user: User
    source: Source
    chat_key: str
    id: str
    unsolicited: bool = False


def new_request_id() -> str:
    """A short random correlation id (8 hex characters) for logs and error messages."""
    return secrets.token_hex(4)
