"""Progress states: the stream `Service.handle` yields and an adapter renders into one reply.

Each state replaces the previous one on screen, so a state carries everything its rendering
needs; `LiveReply` may skip any state but the last.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.errors import UserFacingError
from matcher.result import MatchResult


@dataclass(frozen=True)
class Queued:
    """Waiting for a free matcher slot; `position` 1 means next in line."""

    position: int


@dataclass(frozen=True)
class Fetching:
    """Downloading the clip."""


@dataclass(frozen=True)
class Listening:
    """An interim answer after the first `result.heard_s` seconds of the clip."""

    result: MatchResult


@dataclass(frozen=True)
class Finished:
    """The answer. `truncated`: only the clip's start was heard, because it ran past the
    duration cap or its matching spent the work budget (`result.heard_s` says how much).

    What the answer offers beyond its words, filled in by the service for this request:
    `answer_id` names it for feedback buttons ("" offers none); `watch_urls` link each moment
    it names to where the episode can be watched (the best match, or one per scene of a
    compilation in clip order; "" where the catalogue has no link); `preview` is the path of a
    still of the matched moment, when the index carries previews."""

    result: MatchResult
    truncated: bool = False
    answer_id: str = ""
    watch_urls: tuple[str, ...] = ()
    preview: str | None = None


@dataclass(frozen=True)
class Failed:
    """The request ended without an answer; `error` says why, in the user's words. `repeat`:
    the same refusal was given to this user moments ago (one user's flood), so a chat reply
    may stay silent: one "slow down" per window, not one per message."""

    error: UserFacingError
    request_id: str
    repeat: bool = False


State = Queued | Fetching | Listening | Finished | Failed


def is_final(state: State) -> bool:
    """Whether nothing follows this state."""
    return isinstance(state, Finished | Failed)


# How sure an answer is, in the levels people are shown ("sure", "fairly sure", else "unsure").
# The core decides on these numbers; rendering only puts them in words.
SURE = 0.85
FAIRLY_SURE = 0.6


def may_post_unasked(state: State) -> bool:
    """Whether a scan nobody asked for (a channel message the bot read on its own) may post
    this final state: only a confident answer naming an episode, or a compilation's timeline.
    Never the intro (it names no one episode), "unsure", "not found", "busy" or an error."""
    return isinstance(state, Finished) and _names_an_episode(state.result)


def may_show_unasked(state: State) -> bool:
    """Whether an interim answer is worth posting to people who did not ask, before the final
    one: the same bar as the answer itself, so a scan's reply only appears once it has
    something to say (and is taken back if the final answer falls short after all)."""
    return isinstance(state, Listening) and _names_an_episode(state.result)


def _names_an_episode(result: MatchResult) -> bool:
    if result.status != "match" or result.best is None or result.repeated:
        return False
    compilation = len({segment.episode for segment in result.segments}) > 1
    return compilation or result.best.confidence >= FAIRLY_SURE
