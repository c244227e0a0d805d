"""Query peaks → candidates: a coarse pass over every hypothesis, a fine check of the best few, and
a chance model that turns vote counts into false-alarm probabilities.

A hypothesis maps the clip onto its episode: times × `time_scale`, log bands − `band_shift`.
Three lines of the (time, frequency) plane are searched: speed (a resample: both together, the
diagonal), tempo only (time stretched, pitch kept) and pitch only (pitch shifted, time kept).

1. Coarse: the clip's strongest peaks, paired sparsely, are hashed under every hypothesis of a
   coarse grid (`coarse_step_log2`, ~half a log band) and looked up, skipping keys whose posting
   lists are long. Each posting votes for the global position of its window's centre; offsets
   taken from the centre move least when the hypothesis is slightly off. The fullest offset
   bins of each window become seeds, each with its best hypothesis.
2. Fine: each seed is checked with every dense query landmark under a few hypotheses around its
   own, looking only inside the few frames of the index where its postings would have to be
   (`FingerprintIndex.lookup_window`, a binary search per key), so the check costs the same on a
   100-hour index as on a small one.
3. Chance: postings land anywhere on the catalogue's timeline by chance, so the votes in a cell
   follow a Poisson law whose mean comes from the posting-list lengths of the clip's keys. The
   false-alarm probability counts every cell of the fine grid over the whole searched space
   (all hypotheses of all three lines, every offset, every window), so searching more does not
   raise false positives.

The diagonal (speed) line is searched first; the tempo and pitch lines only when it finds
nothing significant, so unchanged and resampled clips pay for ~55 hypotheses, not ~160.

Measured with `python -m bench.search_scale` on a 100-hour index (300 synthetic episodes of
20 minutes, 18.1 M postings): a 10 s clip costs ~150-250 ms of CPU for fingerprint and search on
a loaded shared core (coarse pass ~60%, fine checks ~25%); clean, resampled 0.8-1.5x, music at
0-5 dB and phone re-recordings were all found (20/20 each). Parameter choices and their numbers
are in `SearchParams`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from matcher import votes
from matcher.hashes import Landmarks, landmarks2hashes_grid, peaks2landmarks
from matcher.hypotheses import (
    FAMILY_SPEED,
    Hypotheses,
    fine_around,
    hypothesis_grid,
    n_fine_hypotheses,
)
from matcher.index import FingerprintIndex
from matcher.params import FingerprintParams, SearchParams
from matcher.peaks import Peaks
from matcher.votes import VoteSpec

# Votes within this many frames of a cell's densest point count towards it.
_REFINE_HALF_WIDTH_FRAMES = 2
# Votes further apart than this (s) belong to different runs (a stray vote, another scene).
_RUN_GAP_S = 2.0
# Frames either side of a seed searched in the fine check beyond its own uncertainty.
_BACKGROUND_FRAMES = 48
# Spread of the votes over the clip is counted in slots of this many seconds.
_SPREAD_SLOT_S = 0.5


@dataclass(frozen=True)
class Candidate:
    """One place in the catalogue that explains (part of) the query.

    offset_frames: episode frame at the query's frame 0 (may be negative when the clip
        starts before the matched part).
    speed: tempo of the clip relative to the episode (1.25 = clip plays 25% faster).
    pitch: frequency factor of the clip relative to the episode (equal to speed for a
        resample, 1.0 for a tempo-only change).
    votes: aligned landmarks (distinct query anchor frames).
    false_alarm_p: probability that chance alone gives this many votes in the best cell of all
        the cells searched.
    query_start_frame, query_stop_frame: span of the clip the votes come from (first anchor,
        last target).
    unique_votes, unique_false_alarm_p: the same, counting only votes outside the index's
        repeated spans (content several episodes share).
    repeat_index: index into `FingerprintIndex.repeats` of the span most shared votes fall
        in, or -1.
    vote_frames, vote_stop_frames: query anchor and target frame of every aligned landmark,
        int32 [shape=(votes,)], for the segment timeline.
    """

    episode_index: int
    offset_frames: float
    speed: float
    votes: int
    false_alarm_p: float
    query_start_frame: int
    query_stop_frame: int
    pitch: float = 1.0
    unique_votes: int = 0
    unique_false_alarm_p: float = 1.0
    repeat_index: int = -1
    vote_frames: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int32), repr=False, compare=False
    )
    vote_stop_frames: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int32), repr=False, compare=False
    )


def _max_dt_frames(params: FingerprintParams, search: SearchParams) -> int:
    slowest = min(search.min_speed, search.min_tempo, 1.0)
    return int(np.ceil(params.max_dt_frames / slowest)) + 1


def query_landmarks(peaks: Peaks, *, index: FingerprintIndex, search: SearchParams) -> Landmarks:
    """Dense query pairs, in a zone wide enough to cover the reference zone at every speed."""
    params = index.params
    return peaks2landmarks(
        peaks,
        fan_out=search.query_fan_out,
        max_dt_frames=_max_dt_frames(params, search),
        max_dband=params.max_dband + 0.5,
    )


def strongest_peaks(peaks: Peaks, *, per_s: float, frame_s: float) -> Peaks:
    """The `per_s` strongest peaks of each one-second block, in the original order."""
    if len(peaks) == 0:
        return peaks
    block = peaks.frame // max(1, round(1.0 / frame_s))
    order = np.lexsort((-peaks.strength, block))
    sorted_block = block[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_block, sorted_block, side="left")
    keep = np.sort(order[rank < max(1, round(per_s))])
    return Peaks(peaks.frame[keep], peaks.band[keep], peaks.strength[keep], peaks.n_frames)


@dataclass(frozen=True)
class _Seed:
    """A coarse cell worth checking: hypothesis, window and global position of its centre."""

    hypothesis: int
    centre_frame: float
    centre_position: float
    votes: int


@dataclass(frozen=True)
class _Query:
    """What every stage of one query's search works from."""

    peaks: Peaks
    landmarks: Landmarks
    index: FingerprintIndex
    search: SearchParams
    # Cells of the fine grid over the whole searched space (the chance model's trials).
    n_cells: float


def _windows(n_frames: int, window_frames: int) -> int:
    return max(1, round(n_frames / max(window_frames, 1)))


def _coarse_seeds(
    peaks: Peaks,
    *,
    index: FingerprintIndex,
    search: SearchParams,
    hyps: Hypotheses,
    compiled: bool = votes.COMPILED,
) -> list[_Seed]:
    """Coarse cells worth a fine check, fullest first (see the module docstring, step 1).

    compiled: vote with the numba kernels of `matcher.votes` (False: their numpy reference).
    """
    params = index.params
    sparse = strongest_peaks(peaks, per_s=search.coarse_peaks_per_s, frame_s=params.frame_s)
    landmarks = peaks2landmarks(
        sparse,
        fan_out=search.coarse_fan_out,
        max_dt_frames=_max_dt_frames(params, search),
        max_dband=params.max_dband + 0.5,
    )
    if len(landmarks) == 0:
        return []
    hashes, hyp, _ = landmarks2hashes_grid(
        sparse, landmarks, params=params, time_scale=hyps.time_scale, band_shift=hyps.band_shift
    )
    counts = index.posting_counts(hashes.key)
    keep = (counts > 0) & (counts <= _count_cap(counts, search))
    key, hyp, anchor = hashes.key[keep], hyp[keep], hashes.anchor_frame[keep].astype(np.int64)
    n_windows = _windows(peaks.n_frames, round(search.window_s / params.frame_s))
    window_len = max(peaks.n_frames, 1) / n_windows
    # Per looked-up key, not per posting: a key has many postings, and these are the same for
    # each of them (the coarse pass casts up to `coarse_max_votes` votes).
    key_window = np.minimum((anchor / window_len).astype(np.int64), n_windows - 1)
    key_shift = np.rint((anchor - (key_window + 0.5) * window_len) * hyps.time_scale[hyp]).astype(
        np.int64
    )
    bin_frames = search.coarse_bin_frames
    margin = int(2 * window_len * max(search.max_speed, search.max_tempo, 1.0)) + bin_frames
    n_top = search.coarse_cells * n_windows
    # Half-bin cells; `_cell_seeds` counts pairs of neighbours, which is the same as two grids
    # half a bin apart (a match straddling a bin edge is not split) for one pass over votes.
    half_bin = max(bin_frames // 2, 1)
    n_half = (index.total_frames + 2 * margin) // half_bin + 2
    spec = VoteSpec(
        key=key.astype(np.int64),
        shift=key_shift,
        window=key_window,
        hyp=np.asarray(hyp, np.int64),
        margin=margin,
        half_bin=half_bin,
        n_bins=n_half,
    )
    seeds = _cell_seeds(
        spec,
        index=index,
        n_bins=n_half,
        n_windows=n_windows,
        window_len=window_len,
        n_top=n_top,
        hyps=hyps,
        compiled=compiled,
    )
    seeds.sort(key=lambda s: -s.votes)
    return seeds


def _count_cap(counts: np.ndarray, search: SearchParams) -> int:
    """Longest posting list the coarse pass looks up: the rarest keys first, within budget.

    The budget (`coarse_max_votes`) bounds the coarse pass's cost whatever the index size: on a
    small index every key fits, on 100 hours only the rarer keys do, and those are also the
    ones that tell most (a chance vote is least likely on a short list).
    """
    capped = np.minimum(counts, search.coarse_max_postings + 1)
    votes_at = np.cumsum(np.bincount(capped, weights=capped))
    fits = np.flatnonzero(votes_at <= search.coarse_max_votes)
    return int(min(fits[-1] if fits.size else 0, search.coarse_max_postings))


def _cell_seeds(
    spec: VoteSpec,
    *,
    index: FingerprintIndex,
    n_bins: int,
    n_windows: int,
    window_len: float,
    n_top: int,
    hyps: Hypotheses,
    compiled: bool,
) -> list[_Seed]:
    """Seeds from the `n_top` fullest pairs of neighbouring cells (cell = window * n_bins +
    half-bin); pair k holds cells k and k + 1.

    One count over every cell instead of a sort of the votes: on a 100-hour index the coarse
    pass casts over a million votes, and sorting them cost more than all the rest of a query.
    The votes are walked twice (count, then collect those in the fullest pairs) rather than
    held: a million votes of three int64 arrays each were 24 MB per query thread.
    """
    if spec.key.size == 0:
        return []
    # Plain ndarray views of the memory-mapped table (no copy) for the compiled kernels.
    offsets, positions = np.asarray(index.offsets), np.asarray(index.positions)
    count = votes.count_cells if compiled else votes.count_cells_reference
    single = count(spec, offsets=offsets, positions=positions, n_cells=n_windows * n_bins + 1)
    counts = single[:-1] + single[1:]
    if not counts.any():
        return []
    # The fullest pairs by a threshold on a histogram of the counts: argpartition over a
    # million mostly tied bins took ~0.25 s, this takes a few ms.
    at_least = np.cumsum(np.bincount(counts)[::-1])[::-1]  # pairs with count >= v
    level = max(int(np.flatnonzero(at_least >= n_top)[-1]) if at_least[0] >= n_top else 1, 1)
    top = np.flatnonzero(counts >= level)
    if top.size > n_top:
        top = top[np.argsort(-counts[top], kind="stable")[:n_top]]
    # A vote in cell c counts for pair c and pair c - 1.
    if compiled:
        chosen = votes.collect_votes(
            spec, offsets=offsets, positions=positions, top=top, n_cells=counts.size,
            counts=counts,
        )  # fmt: skip
    else:
        chosen = votes.collect_votes_reference(
            spec, offsets=offsets, positions=positions, top=top, n_cells=counts.size
        )
    sub_slot, sub_hyp, sub_pos = chosen.slot, chosen.hyp, chosen.position
    hist = np.bincount(sub_slot * hyps.size + sub_hyp, minlength=top.size * hyps.size).reshape(
        top.size, hyps.size
    )
    # Neighbouring hypotheses of one line share most keys: smooth before choosing.
    smooth = hist.astype(np.float64)
    smooth[:, 1:] += 0.5 * hist[:, :-1]
    smooth[:, :-1] += 0.5 * hist[:, 1:]
    best = np.argmax(smooth, axis=1)
    # The median position of each pair's votes at its best hypothesis, for all pairs at once:
    # sort those votes by (pair, position) and take the middle of each pair's run.
    at_best = sub_hyp == best[sub_slot]
    slot_b, pos_b = sub_slot[at_best], sub_pos[at_best]
    order = np.lexsort((pos_b, slot_b))
    pos_sorted = pos_b[order].astype(np.float64)
    n_at = np.bincount(slot_b, minlength=top.size)
    first = np.cumsum(n_at) - n_at
    lo = first + np.maximum(n_at - 1, 0) // 2
    hi = first + n_at // 2
    seeds = []
    for k in np.flatnonzero(n_at > 0).tolist():
        seeds.append(
            _Seed(
                hypothesis=int(best[k]),
                centre_frame=(int(top[k] // n_bins) + 0.5) * window_len,
                centre_position=float((pos_sorted[lo[k]] + pos_sorted[hi[k]]) / 2.0),
                votes=int(hist[k, best[k]]),
            )
        )
    return seeds


def _verify(seed: _Seed, query: _Query, hyps: Hypotheses) -> Candidate | None:
    """The seed checked with every dense landmark under the fine hypotheses around it."""
    peaks, landmarks, index, search = query.peaks, query.landmarks, query.index, query.search
    params = index.params
    fine = fine_around(hyps, seed.hypothesis, search=search, bpo=params.bands_per_octave)
    hashes, f_hyp, lm = landmarks2hashes_grid(
        peaks, landmarks, params=params, time_scale=fine.time_scale, band_shift=fine.band_shift
    )
    if hashes.key.size == 0:
        return None
    anchor = hashes.anchor_frame.astype(np.float64)
    t = fine.time_scale[f_hyp]
    expected = seed.centre_position + (anchor - seed.centre_frame) * t
    # Wider than the seed's uncertainty (half a coarse bin): the frames around the peak
    # measure the local background of chance votes (see below).
    radius = search.coarse_bin_frames // 2 + _BACKGROUND_FRAMES
    postings = index.lookup_window(
        hashes.key,
        np.floor(expected - radius).astype(np.int64),
        np.ceil(expected + radius).astype(np.int64),
        max_postings=search.max_postings_per_key,
    )
    qi = postings.query_index
    # Global position of the clip's frame 0 that each vote names.
    origin = postings.position - anchor[qi] * t[qi]
    best: tuple[int, float, np.ndarray] | None = None
    for f in range(fine.size):
        mask = f_hyp[qi] == f
        if not mask.any():
            continue
        origins = np.sort(origin[mask])
        width = 2 * _REFINE_HALF_WIDTH_FRAMES
        ends = np.searchsorted(origins, origins + width, side="right")
        start = int(np.argmax(ends - np.arange(origins.size)))
        centre = float(np.median(origins[start : ends[start]]))
        hit = np.flatnonzero(mask)[np.abs(origin[mask] - centre) <= _REFINE_HALF_WIDTH_FRAMES + 0.5]
        n_frames = np.unique(anchor[qi[hit]]).size
        if best is None or n_frames > np.unique(anchor[qi[best[2]]]).size:
            best = (f, centre, hit)
    if best is None:
        return None
    f, centre, hit = best
    hit_q = qi[hit]
    vote_frames = hashes.anchor_frame[hit_q]
    vote_stops = peaks.frame[landmarks.target[lm[hit_q]]]
    slot = max(search.vote_slot_frames, 1)
    count = int(np.unique(vote_frames // slot).size)
    spread_slot = max(round(_SPREAD_SLOT_S / params.frame_s), 1)
    spread_ok = np.unique(vote_frames // spread_slot).size >= search.min_spread_slots
    span = _main_run(vote_frames, vote_stops, max_gap=round(_RUN_GAP_S / params.frame_s))
    counts = index.posting_counts(hashes.key[f_hyp == f])
    counts[counts > search.max_postings_per_key] = 0
    width_cells = 2 * _REFINE_HALF_WIDTH_FRAMES + 1
    expected_votes = float(counts.sum()) * width_cells / max(index.total_frames, 1)
    # Local background: votes of this hypothesis around the peak but off it. Unrelated audio
    # of the same kind (speech against speech) agrees by chance more often than the global
    # posting rate says, and it does so at every offset nearby, not only at one; a real match
    # stands out of its own neighbourhood. The larger of the two rates is used (CFAR-style).
    near = (f_hyp[qi] == f) & (np.abs(origin - centre) > 2 * width_cells)
    background_frames = max(2 * radius - 4 * width_cells, 1)
    near_shared = near & (index.repeat_of(postings.position) >= 0)
    local = float(near.sum()) * width_cells / background_frames
    # Outside repeated spans only, for the unique votes (a looping intro raises the background
    # of the shared part, not of the scene after it).
    local_unique = float((near & ~near_shared).sum()) * width_cells / background_frames
    expected_unique = max(expected_votes, local_unique)
    expected_votes = max(expected_votes, local)
    repeat = index.repeat_of(postings.position[hit])
    unique = np.unique(vote_frames[repeat < 0] // slot).size
    shared = repeat[repeat >= 0]
    episode_index = int(index.episode_of(np.array([round(centre)]))[0])
    if episode_index < 0:
        return None
    start_frame = index.episodes[episode_index].start_frame
    return Candidate(
        episode_index=episode_index,
        offset_frames=centre - start_frame,
        speed=float(fine.time_scale[f]),
        votes=count,
        false_alarm_p=_false_alarm(count, expected_votes, query.n_cells) if spread_ok else 1.0,
        query_start_frame=span[0],
        query_stop_frame=span[1],
        pitch=float(2.0 ** (fine.band_shift[f] / params.bands_per_octave)),
        unique_votes=int(unique),
        unique_false_alarm_p=(
            _false_alarm(int(unique), expected_unique, query.n_cells) if spread_ok else 1.0
        ),
        repeat_index=int(np.bincount(shared).argmax()) if shared.size else -1,
        vote_frames=vote_frames.astype(np.int32),
        vote_stop_frames=vote_stops.astype(np.int32),
    )


def _main_run(frames: np.ndarray, stops: np.ndarray, *, max_gap: int) -> tuple[int, int]:
    """(first anchor, last target) of the run of votes holding most of them.

    A stray chance vote far from the rest must not stretch the span the votes come from.
    """
    order = np.argsort(frames, kind="stable")
    f, t = frames[order], stops[order]
    cut = np.r_[0, np.flatnonzero(np.diff(f) > max_gap) + 1, f.size]
    k = int(np.argmax(np.diff(cut)))
    return int(f[cut[k]]), int(t[cut[k] : cut[k + 1]].max())


def _false_alarm(count: int, expected: float, n_cells: float) -> float:
    """Probability that the best of `n_cells` Poisson(expected) cells reaches `count`."""
    if count <= 0:
        return 1.0
    # P(Poisson(expected) >= count); scipy.special, not scipy.stats (0.4 s less to import).
    p_cell = float(special.pdtrc(count - 1, expected)) if expected > 0 else 0.0
    return float(-np.expm1(-n_cells * p_cell))


def search(peaks: Peaks, *, index: FingerprintIndex, search: SearchParams) -> list[Candidate]:
    """Best candidates for the query, best first, at most one per (episode, place).

    peaks: the query's dense peaks (SearchParams.query_peaks_per_s).
    """
    params = index.params
    if len(peaks) < 2 or index.n_postings == 0:
        return []
    hyps = hypothesis_grid(search, params=params, step_log2=search.coarse_step_log2)
    landmarks = query_landmarks(peaks, index=index, search=search)
    n_windows = _windows(peaks.n_frames, round(search.window_s / params.frame_s))
    # Every cell of the fine grid over everything that may be searched, whether or not the
    # second stage runs: the verdict on a candidate must not depend on how it was reached.
    n_cells = (
        n_fine_hypotheses(search, params=params)
        * n_windows
        * max(index.total_frames, 1)
        / (2 * _REFINE_HALF_WIDTH_FRAMES + 1)
    )
    query = _Query(peaks, landmarks, index=index, search=search, n_cells=n_cells)
    diagonal = hyps.family == FAMILY_SPEED
    stages = [np.flatnonzero(diagonal), np.flatnonzero(~diagonal)]
    if search.off_diagonal_always:
        stages = [np.arange(hyps.size)]
    verified: list[Candidate] = []
    for stage in stages:
        if stage.size == 0:
            continue
        verified += _search_stage(query, hyps.take(stage))
        if any(
            c.false_alarm_p <= search.match_false_alarm_p and c.votes >= search.min_votes
            for c in verified
        ):
            break
    return _distinct(verified, frames_apart=2 * _REFINE_HALF_WIDTH_FRAMES + 2)


def _search_stage(query: _Query, hyps: Hypotheses) -> list[Candidate]:
    """Coarse pass over `hyps`, then the fine check of the best seeds."""
    peaks, index, search = query.peaks, query.index, query.search
    n_windows = _windows(peaks.n_frames, round(search.window_s / index.params.frame_s))
    seeds = _coarse_seeds(peaks, index=index, search=search, hyps=hyps)
    verified: list[Candidate] = []
    checked: list[_Seed] = []
    for seed in seeds:
        if len(checked) >= search.verify_candidates * n_windows:
            break
        if any(
            abs(s.centre_position - seed.centre_position) <= search.coarse_bin_frames
            and s.centre_frame == seed.centre_frame
            for s in checked
        ):
            continue
        checked.append(seed)
        cand = _verify(seed, query, hyps)
        if cand is not None:
            verified.append(cand)
    return verified


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
            and abs(np.log2(k.speed / cand.speed)) < 0.03
            for k in kept
        ):
            continue
        kept.append(cand)
    return kept
