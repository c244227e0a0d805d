"""What a user is told when a fetch fails: one sentence each, never a library's own text."""

from __future__ import annotations

import logging

# The link refusals are the links module's, which decides what a link is; re-exported here
# beside the other fetch messages.
from bot.links import MSG_BAD_LINK as MSG_BAD_LINK
from bot.links import MSG_NOT_A_POST as MSG_NOT_A_POST
from bot.links import MSG_UNSUPPORTED as MSG_UNSUPPORTED

log = logging.getLogger(__name__)

MSG_PRIVATE = "That post is private, removed, or needs a login, so I can't open it."
MSG_GEO = "That video isn't available in the country I'm in."
MSG_NO_VIDEO = "I couldn't find a video in that post."
MSG_WEB_PAGE = "That link is a web page, not a video."
MSG_IMAGE_LINK = "That link is an image, not a video."
MSG_TEXT_FILE = "That file is a document, not a video or audio file."
MSG_IMAGE_FILE = "That file is an image, not a video; I need something with sound."
MSG_EMPTY = "That file is empty."
MSG_LIVE = "That's a live stream; send me a clip instead."
MSG_UNREACHABLE = "I couldn't reach that site; try again in a minute."
MSG_SITE_REFUSED = "That site wouldn't let me download the video just now; try again later."
MSG_BROKEN_OFF = "The download broke off before it finished; try again in a minute."
MSG_TOO_SLOW = "That link sends its video too slowly, so I stopped; try again later."
MSG_SERVER_ERROR = "The site didn't hand over the video; try again in a minute."
MSG_NOT_FOUND = "There's nothing at that link any more; it may have been removed."
MSG_LOGIN = "That file needs a login, so I can't open it."
MSG_TOO_MANY_REDIRECTS = "That link redirects too many times, so I gave up."
MSG_BUSY = "All my download slots are busy right now; try again in a minute."
MSG_CLOSING = "I'm restarting right now; try again in a minute."

_PLATFORM_NAMES: dict[str, str] = {
    "tiktok": "TikTok",
    "instagram": "Instagram",
    "youtube": "YouTube",
    "x": "X",
    "reddit": "Reddit",
    "direct": "video file",
}


def busy_message(platform: str) -> str:
    name = _PLATFORM_NAMES.get(platform, platform)
    return f"I'm already downloading as many {name} links as I can; try again in a minute."


def too_large_message(max_bytes: int) -> str:
    return f"That video is bigger than the {_megabytes(max_bytes)} I can take."


def too_long_message(duration_s: float, max_duration_s: float) -> str:
    return (
        f"That video is {_clock(duration_s)} long; I can only take videos up to "
        f"{_clock(max_duration_s)}."
    )


def timeout_message(timeout_s: float) -> str:
    return f"Downloading that took longer than {timeout_s:g} seconds, so I stopped."


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1_000_000:g} MB"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
