"""The fingerprint index: a CSR table from hash key to postings.

Layout (the same in memory and on disk):
- `offsets`: uint32 or uint64 [shape=(2**key_bits + 1,)]; postings of key k are
  `positions[offsets[k]:offsets[k + 1]]`.
- `positions`: uint32 [shape=(n,)] anchor frames on one global timeline that concatenates all
  episodes; `Episode.start_frame` says where each episode begins. One uint32 per posting keeps the
  index small; the episode is recovered by a binary search over episode starts. Within each key
  the positions are ascending (episodes are concatenated in order and each episode's hashes are
  in anchor order; the sort by key is stable), which `lookup_window` relies on.

Repeated spans (content several episodes share, see `matcher.repeats`) travel with the index:
they are found at build time and saved in the manifest.

On disk the arrays are .npy files loaded with `mmap_mode="r"`, so that opening an index costs
nothing and only the pages a query touches are read. `manifest.json` beside them holds the format
version, the fingerprint parameters, their digest, and the episode table (see `matcher.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from matcher.hashes import Hashes
from matcher.params import FingerprintParams


@dataclass(frozen=True)
class Episode:
    """One indexed episode and the source file it came from."""

    id: str
    season: int
    number: int
    title: str | None
    duration_s: float
    checksum: str
    start_frame: int
    n_frames: int
    source: str = ""
    source_size: int = 0
    source_mtime_ns: int = 0

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Episode:
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RepeatedSpan:
    """Content of one episode that `count` episodes hold (this one included).

    start_frame, stop_frame: episode-local frames, stop exclusive.
    label: "intro", "outro", "recap" (early in this episode, elsewhere in the others) or
        "shared" (a recurring cue, stock music, a repeated scene).
    """

    episode: str
    start_frame: int
    stop_frame: int
    label: str
    count: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RepeatedSpan:
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Postings:
    """Result of a batched lookup.

    query_index: int64 [shape=(m,)] which looked-up key each posting answers.
    position: int64 [shape=(m,)] global anchor frame of the posting.
    """

    query_index: np.ndarray
    position: np.ndarray


class FingerprintIndex:
    """Read-only CSR fingerprint table over a catalogue of episodes."""

    def __init__(
        self,
        *,
        params: FingerprintParams,
        episodes: Sequence[Episode],
        offsets: np.ndarray,
        positions: np.ndarray,
        repeats: Sequence[RepeatedSpan] = (),
    ) -> None:
        if offsets.shape != ((1 << params.key_bits) + 1,):
            raise ValueError("offsets do not match the key layout")
        self.params = params
        self.episodes = list(episodes)
        self.offsets = offsets
        self.positions = positions
        self.episode_starts = np.array([e.start_frame for e in self.episodes], dtype=np.int64)
        self.total_frames = sum(e.n_frames for e in self.episodes)
        self.set_repeats(repeats)

    def set_repeats(self, repeats: Sequence[RepeatedSpan]) -> None:
        """Record the repeated spans (episode-local frames) and their global lookup arrays."""
        by_id = {e.id: e for e in self.episodes}
        kept = [r for r in repeats if r.episode in by_id]
        starts = np.array([by_id[r.episode].start_frame + r.start_frame for r in kept], np.int64)
        order = np.argsort(starts, kind="stable")
        self.repeats: list[RepeatedSpan] = [kept[i] for i in order]
        self.repeat_starts = starts[order]
        self.repeat_stops = np.array(
            [by_id[r.episode].start_frame + r.stop_frame for r in self.repeats], np.int64
        )

    def repeat_of(self, position: np.ndarray) -> np.ndarray:
        """Index into `repeats` of the span holding each global frame position, or -1."""
        position = np.asarray(position, dtype=np.int64)
        if not self.repeats:
            return np.full(position.shape, -1, dtype=np.int64)
        i = np.searchsorted(self.repeat_starts, position, side="right") - 1
        inside = (i >= 0) & (position < self.repeat_stops[np.maximum(i, 0)])
        return np.where(inside, i, -1)

    @classmethod
    def from_hashes(
        cls,
        *,
        params: FingerprintParams,
        episodes: Sequence[Episode],
        hashes: Sequence[Hashes],
    ) -> FingerprintIndex:
        """Build the table in memory from each episode's hashes (episode-local frames).

        Repeated spans are not looked for here: `set_repeats(find_repeats(index))` (see
        `matcher.repeats`) records them as a build on disk does.
        """
        offsets, positions = build_csr(params=params, episodes=episodes, hashes=hashes)
        return cls(params=params, episodes=episodes, offsets=offsets, positions=positions)

    @property
    def n_postings(self) -> int:
        return int(self.positions.size)

    @property
    def duration_s(self) -> float:
        return sum(e.duration_s for e in self.episodes)

    def posting_counts(self, keys: np.ndarray) -> np.ndarray:
        """Posting-list length of each key [shape=keys.shape], int64."""
        keys = np.asarray(keys, dtype=np.int64)
        return self.offsets[keys + 1].astype(np.int64) - self.offsets[keys].astype(np.int64)

    def lookup(self, keys: np.ndarray, *, max_postings: int | None = None) -> Postings:
        """All postings of all keys at once. Keys with more than `max_postings` are skipped."""
        keys = np.asarray(keys, dtype=np.int64)
        starts = self.offsets[keys].astype(np.int64)
        counts = self.offsets[keys + 1].astype(np.int64) - starts
        if max_postings is not None:
            counts[counts > max_postings] = 0
        return self._gather(starts, counts)

    def lookup_window(
        self, keys: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, max_postings: int | None = None
    ) -> Postings:
        """Postings of each key whose position lies in [lo[i], hi[i]] (inclusive).

        A binary search inside each key's ascending run, vectorised over keys: the cost grows
        with the log of the posting-list lengths, not with the lengths, so a candidate can be
        checked with every dense query landmark on a big index.
        """
        keys = np.asarray(keys, dtype=np.int64)
        starts = self.offsets[keys].astype(np.int64)
        stops = self.offsets[keys + 1].astype(np.int64)
        if max_postings is not None:
            stops = np.where(stops - starts > max_postings, starts, stops)
        first = _lower_bound(self.positions, starts, stops, np.asarray(lo, dtype=np.int64))
        last = _lower_bound(self.positions, first, stops, np.asarray(hi, dtype=np.int64) + 1)
        return self._gather(first, last - first)

    def _gather(self, starts: np.ndarray, counts: np.ndarray) -> Postings:
        """The `counts[i]` postings from `starts[i]` on, for every query key i, in key order."""
        total = int(counts.sum())
        query_index = np.repeat(np.arange(starts.size, dtype=np.int64), counts)
        # Position of each output within its key's run, added to that run's start.
        run_start_in_output = np.cumsum(counts) - counts
        within = np.arange(total, dtype=np.int64) - np.repeat(run_start_in_output, counts)
        gather = np.repeat(starts, counts) + within
        return Postings(query_index=query_index, position=self.positions[gather].astype(np.int64))

    def lookup_window_naive(self, keys: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Postings:
        """Slow reference for `lookup_window`."""
        full = self.lookup_naive(keys)
        qi = full.query_index
        lo_a, hi_a = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        inside = (full.position >= lo_a[qi]) & (full.position <= hi_a[qi]) if qi.size else qi > 0
        return Postings(qi[inside], full.position[inside])

    def lookup_naive(self, keys: np.ndarray) -> Postings:
        """Slow reference for `lookup`, one key at a time; kept to test the fast path against."""
        query_index: list[int] = []
        position: list[int] = []
        for i, key in enumerate(np.asarray(keys, dtype=np.int64)):
            for p in self.positions[int(self.offsets[key]) : int(self.offsets[key + 1])]:
                query_index.append(i)
                position.append(int(p))
        return Postings(np.array(query_index, dtype=np.int64), np.array(position, dtype=np.int64))

    def episode_of(self, position: np.ndarray) -> np.ndarray:
        """Index into `episodes` of each global frame position."""
        return np.searchsorted(self.episode_starts, position, side="right") - 1


def _lower_bound(
    values: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """First index i in [lo, hi) with values[i] >= target, per element (hi if none).

    Each run values[lo:hi] must be ascending. Compiled when numba is there (a fine check
    bisects ~10 k runs; the vectorised passes cost ~3 ms a query), else `_lower_bound_numpy`.
    """
    if _lower_bound_kernel is None:
        return _lower_bound_numpy(values, lo, hi, target)
    out = np.empty(lo.size, np.int64)
    _lower_bound_kernel(np.asarray(values), lo, hi, target, out)
    return out


def _lower_bound_numpy(
    values: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """`_lower_bound` in numpy: vectorised bisection, ~log2(longest run) passes; the
    reference the compiled one is tested against."""
    lo, hi = lo.copy(), hi.copy()
    last = max(int(values.size) - 1, 0)
    active = np.flatnonzero(lo < hi)
    while active.size:
        mid = (lo[active] + hi[active]) >> 1
        right = values[np.minimum(mid, last)].astype(np.int64) < target[active]
        lo[active] = np.where(right, mid + 1, lo[active])
        hi[active] = np.where(right, hi[active], mid)
        active = active[lo[active] < hi[active]]
    return lo


try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; numpy still works
    _lower_bound_kernel = None
else:

    @numba.njit(cache=True, nogil=True)
    def _lower_bound_kernel(values, lo, hi, target, out):  # type: ignore[no-untyped-def]
        for i in range(lo.size):
            a, b, t = lo[i], hi[i], target[i]
            while a < b:
                mid = (a + b) >> 1
                if np.int64(values[mid]) < t:
                    a = mid + 1
                else:
                    b = mid
            out[i] = a


def build_csr(
    *, params: FingerprintParams, episodes: Sequence[Episode], hashes: Sequence[Hashes]
) -> tuple[np.ndarray, np.ndarray]:
    """CSR arrays (offsets, positions) from per-episode hashes."""
    if len(episodes) != len(hashes):
        raise ValueError("one Hashes per episode is needed")
    keys = np.concatenate([h.key for h in hashes]) if hashes else np.zeros(0, np.uint32)
    positions = (
        np.concatenate(
            [
                h.anchor_frame.astype(np.int64) + e.start_frame
                for e, h in zip(episodes, hashes, strict=True)
            ]
        )
        if hashes
        else np.zeros(0, np.int64)
    )
    if positions.size and positions.max() >= 2**32:
        raise ValueError("catalogue too long for 32-bit positions")
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=1 << params.key_bits)
    offsets = np.zeros((1 << params.key_bits) + 1, dtype=np.uint64)
    np.cumsum(counts, out=offsets[1:])
    offset_dtype = np.uint32 if offsets[-1] < 2**32 else np.uint64
    return offsets.astype(offset_dtype), positions[order].astype(np.uint32)
