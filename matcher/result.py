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
    # Frequency factor of the clip relative to the episode: equal to `speed` for a resample,
    # 1.0 for a tempo-only change, 2 ** (semitones / 12) for a pitch-only change.
    pitch: float = 1.0


@dataclass(frozen=True)
class MatchResult:
    """The answer after hearing `heard_s` seconds of the clip.

    segments: the clip's timeline, in clip order: one Match per stretch found in an episode
        (one for a single scene, several for a compilation). Empty unless `match`.
    repeated: when the clip lies only in content several episodes share, what it is ("intro",
        "outro", "recap", "shared"); the status is then `ambiguous`, never `match`.
    repeated_count: how many episodes hold that content.
    cut_short: the work budget ran out before the end of a long clip; the answer is for its
        first `heard_s` seconds.
    """

    status: Status
    best: Match | None
    candidates: list[Match] = field(default_factory=list)
    segments: list[Match] = field(default_factory=list)
    heard_s: float = 0.0
    clip_duration_s: float = 0.0
    elapsed_ms: float = 0.0
    final: bool = True
    repeated: str | None = None
    repeated_count: int = 0
    cut_short: bool = False


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
        pitch=cand.pitch,
    )


def _confidence(votes: int, false_alarm_p: float, rival_votes: int) -> float:
    """Chance that the candidate is real, discounted by how close the best rival comes."""
    share = votes / max(votes + rival_votes, 1)
    return round((1.0 - false_alarm_p) * share, 4)


def _same_place(a: Candidate, b: Candidate, *, index: FingerprintIndex) -> bool:
    """Same episode and timestamps within a second: one answer found twice."""
    return (
        a.episode_index == b.episode_index
        and abs(a.offset_frames - b.offset_frames) * index.params.frame_s <= 1.0
    )


def _overlap(a: Candidate, b: Candidate) -> bool:
    """Whether the two explain mostly the same stretch of the clip."""
    shared = min(a.query_stop_frame, b.query_stop_frame) - max(
        a.query_start_frame, b.query_start_frame
    )
    shorter = min(
        a.query_stop_frame - a.query_start_frame, b.query_stop_frame - b.query_start_frame
    )
    return shared >= 0.5 * max(shorter, 1)


@dataclass(frozen=True)
class Decision:
    """What `decide_full` concluded: status, matches to show (best first) and repeated content."""

    status: Status
    matches: list[Match]
    repeated: str | None = None
    repeated_count: int = 0


def decide(
    candidates: list[Candidate], *, index: FingerprintIndex, search: SearchParams
) -> tuple[Status, list[Match]]:
    """Status and the matches to show, best first (the first is the answer when `match`)."""
    decision = decide_full(candidates, index=index, search=search)
    return decision.status, decision.matches


def decide_full(
    candidates: list[Candidate], *, index: FingerprintIndex, search: SearchParams
) -> Decision:
    """The decision, judged on the votes that name one episode.

    Votes from repeated spans (intro, shared music) are set aside first: when what is left
    makes a significant match it decides (a clip of intro and scene names the scene's episode).
    When only the shared votes are significant, the clip is `ambiguous` and says what it heard.
    Without repeated spans in the index the unique votes are all the votes.
    """
    if not candidates:
        return Decision("no_match", [])
    thr, floor = search.match_false_alarm_p, search.min_votes

    def unique_ok(c: Candidate) -> bool:
        return c.unique_false_alarm_p <= thr and c.unique_votes >= floor

    def show(c: Candidate, rival: int, unique: bool) -> Match:
        votes = c.unique_votes if unique else c.votes
        p = c.unique_false_alarm_p if unique else c.false_alarm_p
        return candidate2match(c, index=index, confidence=_confidence(votes, p, rival))

    ranked = sorted(candidates, key=lambda c: (not unique_ok(c), -c.unique_votes, -c.votes))
    best = ranked[0]
    if unique_ok(best):
        # Another place of the same episode is a rival too: a looping music bed makes a short
        # clip fit two moments of one episode, and a wrong timestamp is a wrong answer.
        others = [c for c in ranked[1:] if not _same_place(c, best, index=index)]
        ratio = search.ambiguous_ratio

        def rival(c: Candidate) -> bool:
            # In a compilation another scene is not a rival: only another explanation of the
            # same stretch of the clip is. Repeated spans are shared between episodes, so
            # within one episode all votes are compared; across episodes the unique ones.
            if not _overlap(c, best):
                return False
            if c.episode_index == best.episode_index:
                return c.false_alarm_p <= thr and c.votes >= ratio * max(best.votes, 1)
            return unique_ok(c) and c.unique_votes >= ratio * best.unique_votes

        rivals = [c for c in others if rival(c)]
        if rivals:
            group = [best, *rivals][: search.candidates]
            return Decision("ambiguous", [show(c, best.unique_votes, True) for c in group])
        overlapping = [c for c in others if _overlap(c, best)]
        rival_votes = overlapping[0].unique_votes if overlapping else 0
        first = show(best, rival_votes, True)
        rest = [show(c, best.unique_votes, True) for c in others[: search.candidates - 1]]
        return Decision("match", [first, *rest])
    by_votes = sorted(candidates, key=lambda c: (-c.votes, c.false_alarm_p))
    top = by_votes[0]
    if top.false_alarm_p <= thr and top.votes >= floor:
        seen: set[int] = set()
        group = []
        for c in by_votes:
            if c.false_alarm_p <= thr and c.votes >= floor and c.episode_index not in seen:
                seen.add(c.episode_index)
                group.append(c)
        if top.repeat_index >= 0 and len(group) >= 2:
            span = index.repeats[top.repeat_index]
            matches = [show(c, top.votes, False) for c in group[: search.candidates]]
            return Decision("ambiguous", matches, repeated=span.label, repeated_count=span.count)
        if len(group) == 1:
            # Shared content, but only this episode's copy matches (the others are mixed
            # with other sounds): the evidence still names one episode.
            return Decision("match", [show(top, 0, False)])
    shown = [show(c, top.votes, False) for c in by_votes[: search.candidates]]
    return Decision("no_match", shown)
