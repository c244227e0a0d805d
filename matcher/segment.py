"""Candidates → the clip's timeline: which stretch of the clip comes from which episode.

A compilation cuts between scenes; each scene is a candidate of its own (its own episode, offset
and speed), and its aligned landmarks sit in one stretch of the clip. The timeline takes the
significant candidates best first, splits each one's votes into runs (a candidate can also vote
for two stretches, as when a scene is cut back to), and lets each run claim the part of the clip
no better run has claimed. Short gaps between neighbours are split in the middle: the evidence
thins out at a cut because landmarks that straddle it belong to neither scene.
Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcher.index import FingerprintIndex
from matcher.params import SearchParams
from matcher.result import Match, candidate2match
from matcher.search import Candidate

# Votes further apart than this (s) start a new run of a candidate.
_MAX_GAP_S = 2.0
# A stretch shorter than this (s), once better ones have claimed their part, is dropped.
_MIN_SEGMENT_S = 1.0
# Gaps up to this (s) between neighbouring segments, or between a segment and an edge of the
# clip, are closed: the first and last landmarks of a scene lie inside it, not at its edges.
_CLOSE_GAP_S = 2.5


@dataclass(frozen=True)
class _Run:
    cand: Candidate
    start: float
    stop: float
    votes: int


def _runs(cand: Candidate, *, max_gap: float, min_votes: int) -> list[_Run]:
    order = np.argsort(cand.vote_frames, kind="stable")
    frames = cand.vote_frames[order].astype(np.float64)
    stops = cand.vote_stop_frames[order].astype(np.float64)
    if frames.size == 0:
        return []
    cut = np.flatnonzero(np.diff(frames) > max_gap) + 1
    runs = []
    for lo, hi in zip(np.r_[0, cut], np.r_[cut, frames.size], strict=True):
        votes = int(np.unique(frames[lo:hi]).size)
        if votes >= min_votes:
            runs.append(_Run(cand, float(frames[lo]), float(stops[lo:hi].max()), votes))
    return runs


def _claim(free: list[tuple[float, float]], start: float, stop: float) -> list[tuple[float, float]]:
    """Parts of [start, stop) inside the free intervals."""
    return [(max(a, start), min(b, stop)) for a, b in free if min(b, stop) > max(a, start)]


def candidates2segments(
    candidates: list[Candidate],
    *,
    index: FingerprintIndex,
    search: SearchParams,
    n_frames: int,
) -> list[Match]:
    """Timeline of the clip from its candidates, in clip order (empty when nothing is found).

    Only candidates that are significant on their own (false-alarm probability and minimum
    votes) take part; a run of a candidate needs a quarter of the minimum votes.
    """
    frame_s = index.params.frame_s
    max_gap = _MAX_GAP_S / frame_s
    min_len = _MIN_SEGMENT_S / frame_s
    significant = [
        c
        for c in candidates
        if c.false_alarm_p <= search.match_false_alarm_p and c.votes >= search.min_votes
    ]
    runs = [
        r
        for c in significant
        for r in _runs(c, max_gap=max_gap, min_votes=max(2, search.min_votes // 4))
    ]
    runs.sort(key=lambda r: -r.votes)
    free = [(0.0, float(n_frames))]
    pieces: list[tuple[float, float, Candidate]] = []
    for run in runs:
        for a, b in _claim(free, run.start, run.stop):
            if b - a >= min_len:
                pieces.append((a, b, run.cand))
                free = [iv for f in free for iv in _subtract(f, (a, b))]
    pieces.sort(key=lambda p: p[0])
    merged: list[tuple[float, float, Candidate]] = []
    for a, b, c in pieces:
        if merged and _same_place(merged[-1][2], c) and a - merged[-1][1] <= max_gap:
            merged[-1] = (merged[-1][0], b, merged[-1][2])
        else:
            merged.append((a, b, c))
    closed = _close_gaps(merged, n_frames=n_frames, gap=_CLOSE_GAP_S / frame_s)
    return [_as_match(a, b, c, index=index) for a, b, c in closed]


def _subtract(interval: tuple[float, float], cut: tuple[float, float]) -> list[tuple[float, float]]:
    a, b = interval
    out = []
    if cut[0] > a:
        out.append((a, min(b, cut[0])))
    if cut[1] < b:
        out.append((max(a, cut[1]), b))
    return [(x, y) for x, y in out if y > x]


def _same_place(a: Candidate, b: Candidate) -> bool:
    return a.episode_index == b.episode_index and abs(a.offset_frames - b.offset_frames) < 8


def _close_gaps(
    pieces: list[tuple[float, float, Candidate]], *, n_frames: int, gap: float
) -> list[tuple[float, float, Candidate]]:
    starts = [p[0] for p in pieces]
    stops = [p[1] for p in pieces]
    for k in range(len(pieces) - 1):
        if 0 < starts[k + 1] - stops[k] <= gap:
            middle = (stops[k] + starts[k + 1]) / 2
            stops[k], starts[k + 1] = middle, middle
    if pieces and starts[0] <= gap:
        starts[0] = 0.0
    if pieces and n_frames - stops[-1] <= gap:
        stops[-1] = float(n_frames)
    return [(a, b, p[2]) for a, b, p in zip(starts, stops, pieces, strict=True)]


def _as_match(start: float, stop: float, cand: Candidate, *, index: FingerprintIndex) -> Match:
    """The candidate as a Match whose clip span is [start, stop) frames."""
    frame_s = index.params.frame_s
    whole = candidate2match(cand, index=index, confidence=1.0 - cand.false_alarm_p)
    return Match(
        episode=whole.episode,
        title=whole.title,
        offset_s=whole.offset_s,
        query_start_s=start * frame_s,
        query_stop_s=stop * frame_s,
        ref_start_s=whole.offset_s + start * cand.speed * frame_s,
        ref_stop_s=whole.offset_s + stop * cand.speed * frame_s,
        speed=cand.speed,
        confidence=round(1.0 - cand.false_alarm_p, 4),
        votes=cand.votes,
        false_alarm_p=cand.false_alarm_p,
        pitch=cand.pitch,
    )
