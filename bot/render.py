"""Match results → text for people. Pure functions: no I/O, no chat library.

The CLI, the demo and the chat adapters all speak through these, so a clip gets the same words
everywhere.
"""

from __future__ import annotations

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


def describe_stage(result: MatchResult) -> str:
    """The live line while listening: what has been heard and the best guess so far."""
    if result.final:
        return describe_result(result)
    heard = f"listening… {result.heard_s:.0f} s of {result.clip_duration_s:.0f} s"
    if result.status == "match" and result.best is not None:
        return f"{heard}: probably {describe_match(result.best)}"
    return f"{heard}: nothing certain yet"
