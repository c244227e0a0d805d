"""What the bot says about itself: /help (and Telegram's /start) and the profile texts, in one
set of words for every platform. Each adapter adds only how its own people ask, and the way
its platform writes a time ("in 42 seconds").

Pure functions: no I/O, no chat library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.core.limits import Quota
from bot.core.render import Rendered
from bot.links import supported_sites

HELP_TITLE = "Which episode is this clip from?"
WHAT_IT_DOES = (
    "Send me a clip from the show, or a link to one, and I'll tell you which episode it comes "
    "from and where in it. I listen to the sound, so clips that are sped up, cropped or have "
    "music on top usually work."
)
PRIVACY = (
    "Privacy: clips are listened to and thrown away, never kept. I remember answers, by link "
    "and by a fingerprint of the file, so that reposts are answered at once; and the "
    "Right/Wrong votes people give, to fix the catalogue. The bot's logs note who asked what, "
    "for troubleshooting."
)
# Telegram's profile texts: the description shows in an empty chat with the bot (512
# characters at most), the short one on its profile and when it is shared (120).
DESCRIPTION = (
    f"{WHAT_IT_DOES} Works with {supported_sites()} links, videos, GIFs, voice notes and "
    "forwarded clips. In groups, mention me or reply to me. /help shows more."
)
SHORT_DESCRIPTION = "Which episode is this clip from? Send a clip or a link; I find the episode."


def in_words(seconds: float) -> str:
    """ "in 42 s", "in 5 min", "in 3 h 20 min": a wait as people say it, rounded up."""
    total = max(1, int(-(-seconds // 1)))
    if total < 60:
        return f"in {total} s"
    minutes = -(-total // 60)
    if minutes < 60:
        return f"in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"in {hours} h {minutes} min" if minutes else f"in {hours} h"


def quota_lines(quota: Quota, *, when: Callable[[float], str] = in_words) -> list[str]:
    """What the user may still ask, and when used requests come back."""
    if quota.exempt:
        return ["You have no request limit."]
    lines = [
        f"You can ask {quota.minute_left} more this minute (of {quota.per_minute}) and "
        f"{quota.day_left} more today (of {quota.per_day})."
    ]
    if quota.next_in_s > 0:
        lines.append(f"You can ask again {when(quota.next_in_s)}.")
    if quota.full_in_s > 0:
        lines.append(
            f"Used requests come back one by one, not at midnight: all of them "
            f"{when(quota.full_in_s)}."
        )
    return lines


def render_help(
    quota: Quota, *, how_to: Sequence[str], when: Callable[[float], str] = in_words
) -> Rendered:
    """The whole help: what the bot does, how to ask (the adapter's `how_to` lines), the
    user's quota, and what is kept."""
    lines = [WHAT_IT_DOES, "", *how_to, "", *quota_lines(quota, when=when), "", PRIVACY]
    return Rendered(HELP_TITLE, lines, "answer", ephemeral=True)
