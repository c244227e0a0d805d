"""Errors a user is told about, one clear sentence each.

Layers (as in discord.py's `ext/commands/errors.py`): fetch, decode and the limits raise a
`UserFacingError` subclass whose `message` is fit to show a person; the service turns anything
else into `Internal(error_id)` after logging it with `logger.exception` and the same id, so
an operator can find the stack trace from what the user quotes.

Never put a library's error text, a file path or a stack trace in `message`.
"""

from __future__ import annotations

import math


class UserFacingError(Exception):
    """Base class: `kind` names the problem (stable: rendering and tests key on it), `message`
    explains it to the user in one sentence."""

    kind: str = "error"
    default_message: str = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message else self.default_message
        super().__init__(self.message)


class UnsupportedSite(UserFacingError):
    kind = "unsupported_site"
    default_message = "I can't open links from that site."


class PrivatePost(UserFacingError):
    kind = "private_post"
    default_message = "That post is private or needs a login, so I can't open it."


class TooLong(UserFacingError):
    kind = "too_long"
    default_message = "That video is too long for me."


class TooLarge(UserFacingError):
    kind = "too_large"
    default_message = "That file is too big for me."


class NoAudio(UserFacingError):
    kind = "no_audio"
    default_message = "That video has no sound."


class NotMedia(UserFacingError):
    kind = "not_media"
    default_message = "That isn't a video or audio file I can read, or it is damaged."


class BlockedAddress(UserFacingError):
    kind = "blocked_address"
    default_message = "That link points to a private network address, so I won't open it."


class FetchFailed(UserFacingError):
    kind = "fetch_failed"
    default_message = "I couldn't download that; try again in a minute."


class Busy(UserFacingError):
    kind = "busy"
    default_message = "Too many people are asking right now; try again in a minute."


class RateLimited(UserFacingError):
    """The user's quota is spent; `retry_after_s` says for how long."""

    kind = "rate_limited"

    def __init__(self, retry_after_s: float, message: str | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            message or f"You've sent a lot of clips; try again in {format_wait(retry_after_s)}."
        )


class AlreadyWorking(UserFacingError):
    kind = "already_working"
    default_message = (
        "I'm still working on your last clip; I take one at a time, so send this one again "
        "when that answer is in."
    )


class Internal(UserFacingError):
    """A bug or an operator problem. `error_id` is in the logs next to the stack trace."""

    kind = "internal"

    def __init__(self, error_id: str) -> None:
        self.error_id = error_id
        super().__init__(f"Something went wrong on our side (error id {error_id}).")


def format_wait(seconds: float) -> str:
    """`42 s`, `5 min`, `3 h`: rounded up, so that trying again then always works."""
    seconds = max(1.0, seconds)
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    if seconds < 3600:
        return f"{math.ceil(seconds / 60)} min"
    return f"{math.ceil(seconds / 3600)} h"
