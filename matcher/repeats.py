"""Content that several episodes share (intro, outro, recaps, stock music): found at build time by
matching the catalogue against itself, and recorded as spans in the index.

A clip that lies only inside such a span cannot name one episode, so the answer says what it heard
("the intro, in 24 episodes") instead of guessing; votes from these spans count for less when
another part of the clip does name one episode (see `matcher.search`).

How shared content is found: two consecutive reference landmarks of an episode (their keys and
the frames between their anchors) form a 44-bit "shingle". Copies of the same audio give the same
shingles, while unrelated audio rarely does, so one sort of every shingle of the catalogue finds
the postings whose neighbourhood occurs in another episode. Runs of such postings are the spans.
This costs one sort of the postings (a few seconds for 100 hours), not a search per episode.
Pure numpy; never imports the search.
"""

from __future__ import annotations

import numpy as np

from matcher.index import FingerprintIndex, RepeatedSpan

# Marked postings further apart than this (frames, ~1 s) start a new span.
_MAX_GAP_FRAMES = 62
# A span needs this many marked postings and this length (frames, ~1 s): chance shingle
# collisions between hot keys mark scattered postings, not dense runs. On the 100-hour synthetic
# catalogue (300 episodes) chance produced no span at these settings.
_MIN_MARKS = 10
_MIN_FRAMES = 62
# Spans are widened by this much (frames, 1 s) at each end: a cue's ring-out under the next
# scene is still shared (with 0.5 s, clips next to a shared cue were judged ambiguous against
# the cue's other episodes).
_EDGE_PAD_FRAMES = 62
# Shingles whose anchors are further apart than this are not formed (the key holds 6 bits).
_MAX_SHINGLE_DT = 63
# A recap replays whole scenes; shorter early repeats are cues or stock music.
_MIN_RECAP_S = 8.0
# Where intros and outros sit: within this many seconds (or this fraction) of either end.
_EDGE_S = 180.0
_EDGE_FRACTION = 0.2


def _postings_by_position(index: FingerprintIndex) -> tuple[np.ndarray, np.ndarray]:
    """(global position, key) of every posting, ordered by position then key."""
    counts: np.ndarray = np.diff(np.asarray(index.offsets, dtype=np.int64))
    key = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    position = np.asarray(index.positions, dtype=np.int64)
    order = np.lexsort((key, position))
    return position[order], key[order]


def find_repeats(index: FingerprintIndex) -> list[RepeatedSpan]:
    """Spans of each episode whose audio also occurs in at least one other episode."""
    params = index.params
    if index.n_postings < 2 or len(index.episodes) < 2:
        return []
    position, key = _postings_by_position(index)
    episode = index.episode_of(position)
    dt = np.diff(position)
    ok = (episode[1:] == episode[:-1]) & (dt <= _MAX_SHINGLE_DT)
    shingle = (key[:-1] << (params.key_bits + 6)) | (key[1:] << 6) | np.minimum(dt, 63)
    member = np.flatnonzero(ok)  # shingle i belongs to posting i (its first landmark)
    shingle = shingle[member]
    uniq, group, size = np.unique(shingle, return_inverse=True, return_counts=True)
    multi = size[group] >= 2
    member, group = member[multi], group[multi]
    if member.size == 0:
        return []
    n_ep = len(index.episodes)
    pairs = np.unique(group * n_ep + episode[member])
    n_episodes = np.bincount(pairs // n_ep, minlength=uniq.size)
    member = _aligned(member, group, position, episode, n_ep=n_ep)
    if member.size == 0:
        return []
    group = np.searchsorted(uniq, shingle[np.searchsorted(np.flatnonzero(ok), member)])
    m_episode = episode[member]
    local = position[member] - index.episode_starts[m_episode]
    group_local = np.bincount(group, weights=local, minlength=uniq.size) / np.maximum(
        np.bincount(group, minlength=uniq.size), 1
    )
    # Members come out in position order: split into runs at gaps and episode changes.
    pos = position[member]
    new_run = np.r_[True, (np.diff(pos) > _MAX_GAP_FRAMES) | (np.diff(m_episode) != 0)]
    spans: list[RepeatedSpan] = []
    bounds = np.flatnonzero(np.r_[new_run, True])
    for r in range(bounds.size - 1):
        lo, hi = bounds[r], bounds[r + 1]
        if hi - lo < _MIN_MARKS:
            continue
        ep = index.episodes[int(m_episode[lo])]
        # The edges of a copy are mixed with what surrounds it, which breaks shingles there.
        start = max(int(local[lo]) - _EDGE_PAD_FRAMES, 0)
        # Landmarks reach past their anchors; half the pairing zone covers most of them.
        stop = min(
            int(local[hi - 1]) + params.max_dt_frames // 2 + _EDGE_PAD_FRAMES + 1, ep.n_frames
        )
        if stop - start < _MIN_FRAMES:
            continue
        groups = group[lo:hi]
        count = int(np.median(n_episodes[groups]))
        partner_local = float(np.median(group_local[groups]))
        spans.append(
            RepeatedSpan(
                episode=ep.id,
                start_frame=start,
                stop_frame=stop,
                label=_label(
                    start, stop, partner_local, n_frames=ep.n_frames, frame_s=params.frame_s
                ),
                count=max(count, 2),
            )
        )
    return spans


def _aligned(
    member: np.ndarray, group: np.ndarray, position: np.ndarray, episode: np.ndarray, *, n_ep: int
) -> np.ndarray:
    """The members (posting indices, ascending) that belong to a copy of a run elsewhere.

    Each member is linked to the next member of its shingle group in another episode. A real
    copy links many postings with the same time difference between the same two episodes (a
    diagonal); chance collisions of common shingles scatter. Members of links on a diagonal
    that holds `_MIN_MARKS` links (4-frame bins, two grids half a bin apart) are kept.
    """
    order = np.lexsort((position[member], group))
    m, g = member[order], group[order]
    link = (g[1:] == g[:-1]) & (episode[m[1:]] != episode[m[:-1]])
    first, second = m[:-1][link], m[1:][link]
    diagonal = position[second] - position[first]
    pair = episode[first] * n_ep + episode[second]
    kept = np.zeros(position.size, dtype=bool)
    for half in (0, 2):
        code = (pair << 32) | ((diagonal + half) // 4)
        _, inverse, counts = np.unique(code, return_inverse=True, return_counts=True)
        dense = counts[inverse] >= _MIN_MARKS
        kept[first[dense]] = True
        kept[second[dense]] = True
    return np.flatnonzero(kept)


def _label(start: int, stop: int, partner_local: float, *, n_frames: int, frame_s: float) -> str:
    """Where the span sits in this episode and, on average, in the episodes that share it."""
    edge = min(_EDGE_S / frame_s, _EDGE_FRACTION * n_frames)
    if start <= edge and partner_local <= edge:
        return "intro"
    if stop >= n_frames - edge and partner_local >= n_frames - edge - (stop - start):
        return "outro"
    if start <= edge and (stop - start) * frame_s >= _MIN_RECAP_S:
        return "recap"
    return "shared"
