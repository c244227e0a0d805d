"""Match results → text for people. Pure functions: no I/O, no chat library.

The CLI, the demo and the chat adapters all speak through these, so a clip gets the same words
everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from bot.core.errors import UserFacingError
from bot.core.states import FAIRLY_SURE, SURE, Fetching, Finished, Listening, Queued, State
from matcher.result import Match, MatchResult


def format_timestamp(seconds: float) -> str:
    """`12:34`, or `1:02:03` past an hour. Negative times (clip starts before the episode's
    first matched frame) clamp to 0:00."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_percent(confidence: float) -> str:
    return f"{min(99, int(confidence * 100))}%" if confidence < 1 else "99%"


def episode_label(match: Match) -> str:
    """`S07E08 "Up the Down Steroid"`, or just the id when there is no title."""
    return f'{match.episode} "{match.title}"' if match.title else match.episode


def speed_note(match: Match) -> str:
    """`, sped up 1.25×` when the clip plays at another speed than the episode."""
    if abs(match.speed - 1.0) < 0.02:
        return ""
    direction = "sped up" if match.speed > 1 else "slowed down"
    return f", {direction} {match.speed:.2f}×"


def describe_match(match: Match) -> str:
    """`S07E08 "Up the Down Steroid" at 12:34 (96%)`."""
    return (
        f"{episode_label(match)} at {format_timestamp(match.offset_s)} "
        f"({format_percent(match.confidence)}{speed_note(match)})"
    )


def describe_result(result: MatchResult) -> str:
    """One or more lines for a final result."""
    if result.status == "match" and result.best is not None:
        return describe_match(result.best)
    if result.status == "ambiguous":
        options = "; ".join(describe_match(m) for m in result.candidates)
        return f"Not sure. It could be: {options}"
    return "Not found in the catalogue. A longer clip with less music on top may help."


# ---- live replies: a state → a platform-free structure each adapter turns into its markup ----

RenderedKind = Literal["progress", "answer", "unsure", "not_found", "error"]

# Confidence → words (levels from the core). A number alone means little to people; the words
# say how to read it.
# Heard less than this and found nothing: the tip is to send more.
SHORT_CLIP_S = 8.0
# Errors a user should see without the whole chat seeing them, where the platform can.
_PRIVATE_ERRORS = frozenset({"rate_limited", "already_working", "busy"})
_ERROR_TITLES = {
    "rate_limited": "Slow down a little",
    "already_working": "One clip at a time",
    "busy": "I'm busy right now",
    "unsupported_site": "I can't open that link",
    "internal": "Something went wrong",
}
_MAX_SENTENCE_CHARS = 300
# The matcher's labels for content several episodes share.
_REPEATED_TITLES = {
    "intro": "That's the show's intro",
    "outro": "That's the show's outro",
    "recap": "That's a recap",
}
# Speeds and pitches closer to 1 than this are not worth mentioning.
_SAME = 0.02


@dataclass(frozen=True)
class LinkButton:
    """Opens `url`: where to watch the episode, at the matched second."""

    label: str
    url: str


# What a button under an answer asks the bot to do about it.
Action = Literal["right", "wrong", "candidates"]
ACTIONS: frozenset[str] = frozenset({"right", "wrong", "candidates"})


@dataclass(frozen=True)
class ActionButton:
    """Tells the bot `action` about the answer `answer_id`: a feedback vote, or "show the other
    candidates". Adapters encode both in the platform's button payload, so a press still
    works after a restart."""

    label: str
    action: Action
    answer_id: str


Button = LinkButton | ActionButton


@dataclass(frozen=True)
class Rendered:
    """What a reply says, for any platform: a bold `title`, then `lines`.

    `kind` lets an adapter pick a colour or an icon; `ephemeral` asks it to show the reply to
    the requester only where the platform can (Discord), since "slow down" is nobody else's
    business. `links`, when given, runs beside `lines`: the address line i links to ("" for
    none; a compilation's scenes). `buttons` go under the reply in order, `preview` is the
    path of a still to show with it.
    """

    title: str
    lines: list[str]
    kind: RenderedKind
    ephemeral: bool = False
    links: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()
    preview: str | None = None


def confidence_words(confidence: float) -> str:
    """ "sure", "fairly sure" or "unsure"."""
    if confidence >= SURE:
        return "sure"
    if confidence >= FAIRLY_SURE:
        return "fairly sure"
    return "unsure"


def render_state(state: State) -> Rendered:
    """The reply for `state`. Pure: same state, same reply."""
    if isinstance(state, Queued):
        return Rendered(
            "Waiting in line",
            [f"You're number {state.position} in the queue; I'll start as soon as I can."],
            "progress",
        )
    if isinstance(state, Fetching):
        return Rendered("Getting the clip…", [], "progress")
    if isinstance(state, Listening):
        return render_listening(state.result)
    if isinstance(state, Finished):
        return render_finished(state)
    return render_error(state.error)


def render_finished(state: Finished, *, all_candidates: bool = False) -> Rendered:
    """The answer with what it offers: a link to the moment, the preview, and the buttons.
    `all_candidates`: the "Other candidates" button was pressed, so an unsure answer lists
    every candidate in place."""
    result = state.result
    rendered = render_answer(result, truncated=state.truncated, all_candidates=all_candidates)
    urls = state.watch_urls
    buttons: list[Button] = []
    if _is_timeline(result) and any(urls):
        rendered = replace(rendered, links=_timeline_links(result, urls, len(rendered.lines)))
    elif urls and urls[0] and result.best is not None and not result.repeated:
        label = f"Watch at {format_timestamp(result.best.offset_s)}"
        buttons.append(LinkButton(label, urls[0]))
    if state.answer_id:
        buttons.append(ActionButton("Right", "right", state.answer_id))
        buttons.append(ActionButton("Wrong", "wrong", state.answer_id))
        if rendered.kind == "unsure" and _hidden_candidates(result) and not all_candidates:
            buttons.append(ActionButton("Other candidates", "candidates", state.answer_id))
    preview = state.preview if result.best is not None and not result.repeated else None
    return replace(rendered, buttons=tuple(buttons), preview=preview)


def _is_timeline(result: MatchResult) -> bool:
    return (
        not result.repeated
        and result.status == "match"
        and len({s.episode for s in result.segments}) > 1
    )


def _timeline_links(result: MatchResult, urls: tuple[str, ...], n_lines: int) -> tuple[str, ...]:
    """One address per timeline line (scenes in clip order), "" for the notes after them."""
    scenes = min(len(result.segments), n_lines)
    links = [urls[i] if i < len(urls) else "" for i in range(scenes)]
    return (*links, *([""] * (n_lines - scenes)))


def _hidden_candidates(result: MatchResult) -> bool:
    """Whether an unsure answer names fewer candidates than it has: only its best guess."""
    return result.status == "match" and len(result.candidates) > 1


def render_listening(result: MatchResult) -> Rendered:
    """`Listening… 5 s of 42 s` (`1:30 of 10:00` for a long clip) and the best guess so far."""
    if result.clip_duration_s >= 60:
        heard, whole = format_timestamp(result.heard_s), format_timestamp(result.clip_duration_s)
    else:
        heard, whole = f"{result.heard_s:.0f} s", f"{result.clip_duration_s:.0f} s"
    title = f"Listening… {heard} of {whole}"
    if result.status == "match" and result.best is not None:
        best = result.best
        line = f"So far it sounds like {episode_label(best)} at {format_timestamp(best.offset_s)}."
    else:
        line = "Nothing certain yet."
    return Rendered(title, [line], "progress")


def render_answer(
    result: MatchResult, *, truncated: bool = False, all_candidates: bool = False
) -> Rendered:
    """The final answer: episode and time, the intro, a compilation's timeline, or not found.
    `all_candidates` lists every candidate under an unsure best guess."""
    if result.repeated:
        rendered = _render_repeated(result.repeated, result.repeated_count)
    elif result.status == "match" and result.best is not None:
        segments = result.segments
        if len({s.episode for s in segments}) > 1:
            rendered = _render_timeline(segments)
        else:
            rendered = _render_match(result.best)
            if all_candidates and rendered.kind == "unsure" and _hidden_candidates(result):
                rendered = replace(rendered, lines=_candidate_lines(result.candidates))
    elif result.status == "ambiguous" and result.candidates:
        rendered = _render_ambiguous(result.candidates)
    else:
        rendered = _render_not_found(result)
    if truncated:
        note = f"The clip is long, so I listened to the first {format_timestamp(result.heard_s)}."
        rendered = replace(rendered, lines=[*rendered.lines, note])
    return rendered


def render_error(error: UserFacingError) -> Rendered:
    """One sentence per error kind; the message is trimmed to one line so that nothing a
    library said at length (let alone a stack trace) can reach a user."""
    title = _ERROR_TITLES.get(error.kind, "I can't check that")
    return Rendered(title, [_one_sentence(error)], "error", ephemeral=error.kind in _PRIVATE_ERRORS)


def describe_segment(match: Match) -> str:
    """`0:00–0:07 S01E02 "Title" at 3:10`: where in the clip, what, and where in the episode."""
    return (
        f"{format_timestamp(match.query_start_s)}–{format_timestamp(match.query_stop_s)} "
        f"{episode_label(match)} at {format_timestamp(match.ref_start_s)}"
    )


def _render_match(best: Match) -> Rendered:
    words = confidence_words(best.confidence)
    lines = [f"At {format_timestamp(best.offset_s)} ({words}, {format_percent(best.confidence)})."]
    if note := _speed_sentence(best):
        lines.append(note)
    if words == "unsure":
        return Rendered(f"Maybe {episode_label(best)}", lines, "unsure")
    return Rendered(episode_label(best), lines, "answer")


def _speed_sentence(match: Match) -> str:
    """How the clip was altered: resampled (speed and pitch together), tempo or pitch only."""
    pitch = match.pitch
    if abs(match.speed - 1.0) >= _SAME:
        direction = "sped up" if match.speed > 1 else "slowed down"
        kept = " with its pitch kept" if abs(pitch - 1.0) < _SAME else ""
        return f"The clip is {direction} {match.speed:.2f}×{kept} compared with the episode."
    if abs(pitch - 1.0) >= _SAME:
        semitones = 12 * math.log2(pitch)
        direction = "up" if semitones > 0 else "down"
        return f"The clip's pitch is shifted {direction} {abs(semitones):.1f} semitones."
    return ""


def _render_timeline(segments: list[Match]) -> Rendered:
    ordered = sorted(segments, key=lambda s: s.query_start_s)
    return Rendered(
        f"A compilation: {len(ordered)} clips",
        [describe_segment(s) for s in ordered],
        "answer",
    )


def _render_ambiguous(candidates: list[Match]) -> Rendered:
    return Rendered("Not sure which episode", _candidate_lines(candidates), "unsure")


def _candidate_lines(candidates: list[Match]) -> list[str]:
    lines = ["It could be:"] + [f"• {describe_match(m)}" for m in candidates]
    lines.append("A longer clip would help me tell them apart.")
    return lines


def _render_repeated(label: str, count: int) -> Rendered:
    what = _REPEATED_TITLES.get(label, "That part is shared by several episodes")
    where = f"{count} episodes" if count > 1 else "many episodes"
    return Rendered(
        what,
        [
            f"It appears in {where}, so it can't tell me which one this is.",
            "Send a part from after it and I'll find the episode.",
        ],
        "answer",
    )


def _render_not_found(result: MatchResult) -> Rendered:
    if result.heard_s < SHORT_CLIP_S:
        tip = "Tip: a longer clip (10 s or more) gives me more to go on."
    else:
        tip = "Tip: parts where the show's own sound is clear, without music over it, work best."
    return Rendered(
        "Not found", ["I couldn't find this clip in any episode I know.", tip], "not_found"
    )


def _one_sentence(error: UserFacingError) -> str:
    message = (error.message or "").strip().splitlines()
    text = message[0].strip() if message else ""
    if not text or "Traceback" in text:
        text = type(error).default_message
    if len(text) > _MAX_SENTENCE_CHARS:
        text = text[: _MAX_SENTENCE_CHARS - 1].rstrip() + "…"
    return text


# ---- fitting a reply into a platform's size limit -------------------------------------------


def clip_text(text: str, limit: int, *, size: Callable[[str], int] = len) -> str:
    """`text` cut to `limit` (as `size` measures: characters, or Telegram's UTF-16 units),
    ending with "…" when cut."""
    if size(text) <= limit:
        return text
    clipped = text[: max(0, limit - 1)]
    while clipped and size(clipped) > limit - 1:
        clipped = clipped[:-1]
    return clipped + "…"


def fit_lines(lines: list[str], budget: int, *, size: Callable[[str], int] = len) -> list[str]:
    """`lines` joined by newlines within `budget`: whole lines while they fit, then "… and N
    more". A first line too long on its own is clipped rather than dropped, so the reply never
    shows only the count."""
    if size("\n".join(lines)) <= budget:
        return lines
    kept: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        sep = 1 if kept else 0
        last = i == len(lines) - 1
        more = "" if last else f"… and {len(lines) - i - 1} more"
        room = budget - used - sep - (size(more) + 1 if more else 0)
        if size(line) <= room:
            kept.append(line)
            used += sep + size(line)
            continue
        if not kept and room > 0:
            return [clip_text(line, room, size=size), *([more] if more else [])]
        return [*kept, f"… and {len(lines) - i} more"]
    return kept
