"""Long clips: heard in bounded windows, each searched as a short clip, within a CPU budget.

One search over a whole long clip costs more than its parts: the coarse pass holds a vote cell
for every offset of the catalogue in every `window_s` of the clip, so ten minutes of noise took
minutes of CPU and half a gigabyte. Here a long clip is cut into windows of `long_window_s`
(plus a little overlap, so a scene straddling a cut is whole in one of them), each searched on
its own: memory stays that of one window, and each window's coarse pass has the same vote
budget (`coarse_max_votes`) as a short clip's, so a long clip costs less per second than a
short one. Windows are searched in clip order until the request's CPU budget is spent; the
answer then covers what was heard. After each window the caller gets what was found so far, so
the reply can show progress, and the caller can hand its thread to other work in between.

Each window's candidates are moved to clip time, and the chance model counts the windows: a
false alarm anywhere among k windows is 1 - (1 - p)^k, the same as one search over all their
cells. Candidates of neighbouring windows that name the same place are merged into one.
Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from matcher.budget import Budget
from matcher.index import FingerprintIndex
from matcher.params import SearchParams
from matcher.peaks import Peaks
from matcher.search import Candidate, search

# Windows overlap by this much (s): a scene cut in two at a window edge is whole in one.
_OVERLAP_S = 2.0
# Candidates of two windows that put the clip this close in episode time (frames), where they
# meet, at speeds this close (log2), are one: the window holding less of a scene can be a
# little off in speed, and so in its offset at the clip's frame 0.
_SAME_PLACE_FRAMES = 16
_SAME_SPEED_LOG2 = 0.015


@dataclass(frozen=True)
class WindowedSearch:
    """What the windows found: candidates in clip time, and how much of the clip was heard.
    `last`: no window follows (the clip ended, or the budget is spent)."""

    candidates: list[Candidate]
    heard_frames: int
    last: bool


def window_spans(
    n_frames: int, *, window_frames: int, overlap_frames: int
) -> list[tuple[int, int]]:
    """(start, stop) frames of each window, in clip order, covering the clip. A tail shorter
    than half a window is not a window of its own: the one before it reaches the end."""
    step = max(window_frames - overlap_frames, 1)
    spans = [(start, min(start + window_frames, n_frames)) for start in range(0, n_frames, step)]
    spans = [span for k, span in enumerate(spans) if k == 0 or span[0] + overlap_frames < n_frames]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < window_frames // 2:
        spans.pop()
        spans[-1] = (spans[-1][0], n_frames)
    return spans or [(0, n_frames)]


def hear_windows(
    peaks: Peaks, *, index: FingerprintIndex, search_params: SearchParams, budget: Budget
) -> Iterator[WindowedSearch]:
    """Search `peaks` window by window in clip order; after each window, what all the windows
    so far found. Stops after the window that exhausts `budget` (the first window is always
    searched). The generator may be resumed on another thread between windows."""
    frame_s = index.params.frame_s
    window = max(round(search_params.long_window_s / frame_s), 1)
    overlap = round(_OVERLAP_S / frame_s)
    spans = window_spans(peaks.n_frames, window_frames=window, overlap_frames=overlap)
    pool = _Pool(slot=search_params.vote_slot_frames)
    for searched, (start, stop) in enumerate(spans, start=1):
        with budget.charge():
            part = search(peaks.window(start, stop), index=index, search=search_params)
            pool.add([_to_clip_time(c, start) for c in part])
            in_clip = pool.candidates(trials=searched)
        last = searched == len(spans) or budget.exhausted
        yield WindowedSearch(in_clip, heard_frames=stop, last=last)
        if last:
            return


def _to_clip_time(cand: Candidate, start: int) -> Candidate:
    """A window's candidate in the clip's frames (the window began at clip frame `start`)."""
    return replace(
        cand,
        offset_frames=cand.offset_frames - start * cand.speed,
        query_start_frame=cand.query_start_frame + start,
        query_stop_frame=cand.query_stop_frame + start,
        vote_frames=cand.vote_frames + np.int32(start),
        vote_stop_frames=cand.vote_stop_frames + np.int32(start),
    )


def _over_windows(cand: Candidate, trials: int) -> Candidate:
    """The false-alarm probabilities of one window's search made good for `trials` windows."""
    return replace(
        cand,
        false_alarm_p=_any_of(cand.false_alarm_p, trials),
        unique_false_alarm_p=_any_of(cand.unique_false_alarm_p, trials),
    )


def _any_of(p: float, trials: int) -> float:
    if p >= 1.0:
        return 1.0
    return float(-np.expm1(trials * np.log1p(-p)))


class _Pool:
    """One candidate per place over all the windows so far: those of overlapping windows that
    restate each other become one, their votes pooled (a vote seen by both counts once). Kept
    per episode, so a window's candidates are compared with their own episode's only (ten
    minutes of noise gave 800 candidates, and comparing all with all cost a fifth of the CPU).
    """

    def __init__(self, *, slot: int) -> None:
        self._slot = slot
        self._by_episode: dict[int, list[Candidate]] = {}

    def add(self, candidates: list[Candidate]) -> None:
        for cand in sorted(candidates, key=_rank):
            kept = self._by_episode.setdefault(cand.episode_index, [])
            for i, other in enumerate(kept):
                if _same_place(other, cand):
                    better, worse = (other, cand) if _rank(other) <= _rank(cand) else (cand, other)
                    kept[i] = _pooled(better, worse, slot=self._slot)
                    break
            else:
                kept.append(cand)

    def candidates(self, *, trials: int) -> list[Candidate]:
        """Best first, with the chance model made good for `trials` windows."""
        every = (c for kept in self._by_episode.values() for c in kept)
        return sorted((_over_windows(c, trials) for c in every), key=_rank)


def _rank(cand: Candidate) -> tuple[int, float]:
    return (-cand.votes, cand.false_alarm_p)


def _same_place(a: Candidate, b: Candidate) -> bool:
    if a.episode_index != b.episode_index or abs(np.log2(a.speed / b.speed)) >= _SAME_SPEED_LOG2:
        return False
    # Where the two spans meet (or come closest), both must name the same episode frame.
    meet = (
        max(a.query_start_frame, b.query_start_frame) + min(a.query_stop_frame, b.query_stop_frame)
    ) / 2
    at_a = a.offset_frames + meet * a.speed
    at_b = b.offset_frames + meet * b.speed
    return abs(at_a - at_b) < _SAME_PLACE_FRAMES


def _pooled(a: Candidate, b: Candidate, *, slot: int) -> Candidate:
    frames = np.concatenate([a.vote_frames, b.vote_frames])
    stops = np.concatenate([a.vote_stop_frames, b.vote_stop_frames])
    frames, first = np.unique(frames, return_index=True)
    return replace(
        a,
        # Counted as the search counts them: once per slot of query frames.
        votes=int(np.unique(frames // max(slot, 1)).size),
        false_alarm_p=min(a.false_alarm_p, b.false_alarm_p),
        unique_votes=max(a.unique_votes, b.unique_votes),
        unique_false_alarm_p=min(a.unique_false_alarm_p, b.unique_false_alarm_p),
        query_start_frame=min(a.query_start_frame, b.query_start_frame),
        query_stop_frame=max(a.query_stop_frame, b.query_stop_frame),
        vote_frames=frames.astype(np.int32),
        vote_stop_frames=stops[first].astype(np.int32),
    )
