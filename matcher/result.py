"""Candidates → an answer: `match`, `ambiguous` or `no_match`, with confidence and candidates.

The decision is made here and only here, so that the CLI, the bot and the benchmarks agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from matcher.index import FingerprintIndex
from matcher.params import SearchParams
from matcher.search import Candidate

Status = Literal["match", "ambiguous", "no_match"]


@dataclass(frozen=True)
class Match:
    """A stretch of the clip found in an episode. Times in seconds.

    query_start_s / query_stop_s: where in the clip the evidence lies.
    ref_start_s / ref_stop_s: the same stretch in episode time.
    offset_s: episode time at the clip's start (ref_start_s minus the clip time before it).
    """

    episode: str
    title: str | None
    offset_s: float
    query_start_s: float
    query_stop_s: float
    ref_start_s: float
    ref_stop_s: float
    speed: float
    confidence: float
    votes: int
    false_alarm_p: float


@dataclass(frozen=True)
class MatchResult:
    """The answer after hearing `heard_s` seconds of the clip."""

    status: Status
    best: Match | None
    candidates: list[Match] = field(default_factory=list)
    segments: list[Match] = field(default_factory=list)
    heard_s: float = 0.0
    clip_duration_s: float = 0.0
    elapsed_ms: float = 0.0
    final: bool = True


def candidate2match(cand: Candidate, *, index: FingerprintIndex, confidence: float) -> Match:
    """Seconds and names for a candidate."""
    frame_s = index.params.frame_s
    episode = index.episodes[cand.episode_index]
    offset_s = cand.offset_frames * frame_s
    return Match(
        episode=episode.id,
        title=episode.title,
        offset_s=offset_s,
        query_start_s=cand.query_start_frame * frame_s,
        query_stop_s=cand.query_stop_frame * frame_s,
        ref_start_s=offset_s + cand.query_start_frame * cand.speed * frame_s,
        ref_stop_s=offset_s + cand.query_stop_frame * cand.speed * frame_s,
        speed=cand.speed,
        confidence=confidence,
        votes=cand.votes,
        false_alarm_p=cand.false_alarm_p,
    )


def _confidence(cand: Candidate, rival_votes: int) -> float:
    """Chance that the candidate is real, discounted by how close the best rival comes."""
    share = cand.votes / max(cand.votes + rival_votes, 1)
    return round((1.0 - cand.false_alarm_p) * share, 4)


def decide(
    candidates: list[Candidate], *, index: FingerprintIndex, search: SearchParams
) -> tuple[Status, list[Match]]:
    """Status and the matches to show, best first (the first is the answer when `match`)."""
    if not candidates:
        return "no_match", []
    best = candidates[0]
    others = [c for c in candidates[1:] if c.episode_index != best.episode_index]
    rival_votes = others[0].votes if others else 0
    significant = (
        best.false_alarm_p <= search.match_false_alarm_p and best.votes >= search.min_votes
    )
    if not significant:
        shown = [
            candidate2match(c, index=index, confidence=_confidence(c, best.votes))
            for c in candidates[: search.candidates]
        ]
        return "no_match", shown
    rivals = [
        c
        for c in others
        if c.votes >= search.ambiguous_ratio * best.votes
        and c.false_alarm_p <= search.match_false_alarm_p
    ]
    if rivals:
        group = [best, *rivals][: search.candidates]
        matches = [
            candidate2match(c, index=index, confidence=_confidence(c, best.votes)) for c in group
        ]
        return "ambiguous", matches
    first = candidate2match(best, index=index, confidence=_confidence(best, rival_votes))
    rest = [
        candidate2match(c, index=index, confidence=_confidence(c, best.votes))
        for c in others[: search.candidates - 1]
    ]
    return "match", [first, *rest]
