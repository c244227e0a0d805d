"""Query peaks → candidates: batched look-ups, offset voting per speed hypothesis, and a
chance model that turns vote counts into false-alarm probabilities.

For every speed hypothesis the query's landmarks are hashed as if mapped onto the episode's time
and frequency axes; every posting of every key votes for the cell (hypothesis, episode position of
the clip's start). A real match piles votes into one cell. By chance, postings land anywhere on
the catalogue's timeline, so the votes in one cell follow a Poisson law whose mean depends on the
posting-list lengths and the catalogue length; the probability that the best of all cells searched
reaches the observed count by chance is the false-alarm probability reported with a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from matcher.hashes import Landmarks, landmarks2hashes, peaks2landmarks
from matcher.index import FingerprintIndex
from matcher.params import SearchParams
from matcher.peaks import Peaks

# Cells examined in detail after the coarse count; real matches are always among the first few.
_REFINE_CELLS = 24
# Votes within this many frames of a cell's densest point count towards it.
_REFINE_HALF_WIDTH_FRAMES = 2
# Cell codes pack (hypothesis, half-bin grid, offset bin) into one int64 for np.unique.
_CELL_BITS = 36
_CELL_BIAS = 1 << 35


@dataclass(frozen=True)
class Candidate:
    """One place in the catalogue that explains the query.

    offset_frames: episode frame at the query's frame 0 (may be negative when the clip
        starts before the matched part).
    speed: clip speed relative to the episode (1.25 = clip plays 25% faster).
    votes: aligned landmarks.
    false_alarm_p: probability that chance alone gives this many votes in the best cell of all
        the cells searched.
    query_start_frame, query_stop_frame: span of the clip the votes come from.
    """

    episode_index: int
    offset_frames: float
    speed: float
    votes: int
    false_alarm_p: float
    query_start_frame: int
    query_stop_frame: int


def speed_hypotheses(search: SearchParams) -> np.ndarray:
    """Geometric grid of speeds from min_speed to max_speed that always contains 1.0."""
    lo, hi = np.log2(search.min_speed), np.log2(search.max_speed)
    step = search.speed_step_log2
    below = -np.arange(0.0, -lo + 1e-9, step)[1:][::-1] if lo < 0 else np.zeros(0)
    above = np.arange(0.0, hi + 1e-9, step)
    return np.asarray(2.0 ** np.concatenate([below, above]), dtype=np.float64)


def query_landmarks(peaks: Peaks, *, index: FingerprintIndex, search: SearchParams) -> Landmarks:
    """Dense query pairs, in a zone wide enough to cover the reference zone at every speed."""
    params = index.params
    return peaks2landmarks(
        peaks,
        fan_out=search.query_fan_out,
        max_dt_frames=int(np.ceil(params.max_dt_frames / search.min_speed)) + 1,
        max_dband=params.max_dband + 0.5,
    )


@dataclass(frozen=True)
class _Votes:
    """Every vote of a query: its hypothesis, its query frame and the global offset it names.

    chance_rate: expected chance votes per frame of offset, per hypothesis.
    """

    hypothesis: np.ndarray
    query_frame: np.ndarray
    offset: np.ndarray
    chance_rate: np.ndarray


def _collect_votes(
    peaks: Peaks,
    landmarks: Landmarks,
    speeds: np.ndarray,
    *,
    index: FingerprintIndex,
    search: SearchParams,
) -> _Votes:
    params = index.params
    keys, anchors, hyps = [], [], []
    for h, speed in enumerate(speeds):
        band_shift = params.bands_per_octave * np.log2(speed)
        hashes = landmarks2hashes(
            peaks, landmarks, params=params, time_scale=speed, band_shift=band_shift
        )
        keys.append(hashes.key)
        anchors.append(hashes.anchor_frame)
        hyps.append(np.full(hashes.key.size, h, dtype=np.int64))
    key = np.concatenate(keys)
    anchor = np.concatenate(anchors).astype(np.int64)
    hyp = np.concatenate(hyps)
    counts = index.posting_counts(key)
    counts[counts > search.max_postings_per_key] = 0
    chance_rate = np.bincount(hyp, weights=counts, minlength=speeds.size) / max(
        index.total_frames, 1
    )
    postings = index.lookup(key, max_postings=search.max_postings_per_key)
    qi = postings.query_index
    vote_hyp = hyp[qi]
    query_frame = anchor[qi]
    offset = postings.position - np.rint(query_frame * speeds[vote_hyp]).astype(np.int64)
    return _Votes(vote_hyp, query_frame, offset, chance_rate)


def _top_cells(votes: _Votes, *, bin_frames: int, n: int) -> np.ndarray:
    """The `n` (hypothesis, offset bin) cells with most votes, as int64 codes, best first.

    Each vote is counted in two grids shifted by half a bin, so that a match straddling a bin
    edge is not split in two.
    """
    if votes.offset.size == 0:
        return np.zeros(0, dtype=np.int64)
    codes = []
    for half in (0, 1):
        cell = (votes.offset + half * (bin_frames // 2)) // bin_frames
        codes.append((((votes.hypothesis << 1) | half) << _CELL_BITS) | (cell + _CELL_BIAS))
    code = np.concatenate(codes)
    unique, counts = np.unique(code, return_counts=True)
    best = np.argsort(counts, kind="stable")[::-1][:n]
    return unique[best]


def _refine(
    votes: _Votes,
    cell_code: int,
    *,
    bin_frames: int,
    speeds: np.ndarray,
    index: FingerprintIndex,
    n_cells: float,
) -> Candidate:
    """Exact count around a cell's densest point, with its false-alarm probability."""
    hyp, half = int(cell_code >> (_CELL_BITS + 1)), int((cell_code >> _CELL_BITS) & 1)
    cell = int(cell_code & ((1 << _CELL_BITS) - 1)) - _CELL_BIAS
    lo = cell * bin_frames - half * (bin_frames // 2) - bin_frames
    hi = lo + 3 * bin_frames
    mask = (votes.hypothesis == hyp) & (votes.offset >= lo) & (votes.offset < hi)
    offsets = np.sort(votes.offset[mask])
    width = 2 * _REFINE_HALF_WIDTH_FRAMES
    # Densest window of `width` frames among the offsets.
    ends = np.searchsorted(offsets, offsets + width, side="right")
    start = int(np.argmax(ends - np.arange(offsets.size)))
    window = offsets[start : ends[start]]
    centre = float(np.median(window))
    in_window = mask & (np.abs(votes.offset - centre) <= _REFINE_HALF_WIDTH_FRAMES)
    frames = votes.query_frame[in_window]
    # Landmarks sharing an anchor (a note and its harmonics) vote together even by chance;
    # counting distinct query frames keeps the votes close to independent.
    count = int(np.unique(frames).size)
    expected = float(votes.chance_rate[hyp]) * (width + 1)
    p_cell = float(stats.poisson.sf(count - 1, expected)) if expected > 0 else 0.0
    false_alarm_p = float(-np.expm1(-n_cells * p_cell))
    episode_index = int(index.episode_of(np.array([round(centre)]))[0])
    start_frame = index.episodes[max(episode_index, 0)].start_frame
    return Candidate(
        episode_index=episode_index,
        offset_frames=centre - start_frame,
        speed=float(speeds[hyp]),
        votes=count,
        false_alarm_p=false_alarm_p,
        query_start_frame=int(frames.min()) if frames.size else 0,
        query_stop_frame=int(frames.max()) if frames.size else 0,
    )


def search(peaks: Peaks, *, index: FingerprintIndex, search: SearchParams) -> list[Candidate]:
    """Best candidates for the query, best first, at most one per (episode, place).

    peaks: the query's dense peaks (SearchParams.query_peaks_per_s).
    """
    speeds = speed_hypotheses(search)
    landmarks = query_landmarks(peaks, index=index, search=search)
    votes = _collect_votes(peaks, landmarks, speeds, index=index, search=search)
    bin_frames = search.offset_bin_frames
    # Every hypothesis times every offset a window could take on the catalogue's timeline.
    n_cells = speeds.size * max(index.total_frames, 1) / (2 * _REFINE_HALF_WIDTH_FRAMES + 1)
    refined = [
        _refine(
            votes, int(code), bin_frames=bin_frames, speeds=speeds, index=index, n_cells=n_cells
        )
        for code in _top_cells(votes, bin_frames=bin_frames, n=_REFINE_CELLS)
    ]
    return _distinct(refined, frames_apart=2 * peaks.n_frames + 64)


def _distinct(candidates: list[Candidate], *, frames_apart: int) -> list[Candidate]:
    """Best-first, dropping candidates that restate a better one (same episode and place)."""
    ranked = sorted(candidates, key=lambda c: (-c.votes, c.false_alarm_p))
    kept: list[Candidate] = []
    for cand in ranked:
        if cand.episode_index < 0:
            continue
        if any(
            k.episode_index == cand.episode_index
            and abs(k.offset_frames - cand.offset_frames) < frames_apart
            for k in kept
        ):
            continue
        kept.append(cand)
    return kept
