"""The compiled coarse-voting kernels against their numpy reference, and the whole coarse pass
with one against the other (seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from bot.synth.degrade import change_speed
from matcher import votes
from matcher.hypotheses import hypothesis_grid
from matcher.index import FingerprintIndex
from matcher.params import FingerprintParams, SearchParams
from matcher.search import _coarse_seeds

SR = 8000
PARAMS = FingerprintParams()

needs_numba = pytest.mark.skipif(not votes.COMPILED, reason="numba is not installed")


def _random_table(rng: np.random.Generator, *, n_keys: int, n_postings: int, span: int):
    keys = np.sort(rng.integers(0, n_keys, size=n_postings))
    counts = np.bincount(keys, minlength=n_keys)
    offsets = np.zeros(n_keys + 1, np.uint32)
    np.cumsum(counts, out=offsets[1:])
    positions = np.concatenate([np.sort(rng.integers(0, span, size=c)) for c in counts]).astype(
        np.uint32
    )
    return offsets, positions


@needs_numba
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernels_equal_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    span = 50_000
    offsets, positions = _random_table(rng, n_keys=4096, n_postings=60_000, span=span)
    n_windows, margin, half_bin = 2, 600, 8
    n_bins = (span + 2 * margin) // half_bin + 2
    k = 3000
    spec = votes.VoteSpec(
        key=rng.integers(0, 4096, size=k).astype(np.int64),
        shift=rng.integers(-500, 500, size=k).astype(np.int64),
        window=rng.integers(0, n_windows, size=k).astype(np.int64),
        hyp=rng.integers(0, 50, size=k).astype(np.int64),
        margin=margin,
        half_bin=half_bin,
        n_bins=n_bins,
    )
    n_cells = n_windows * n_bins + 1
    fast = votes.count_cells(spec, offsets=offsets, positions=positions, n_cells=n_cells)
    slow = votes.count_cells_reference(spec, offsets=offsets, positions=positions, n_cells=n_cells)
    np.testing.assert_array_equal(fast, slow)
    pairs = fast[:-1] + fast[1:]
    top = np.argsort(-pairs, kind="stable")[:20]
    got = votes.collect_votes(
        spec, offsets=offsets, positions=positions, top=top, n_cells=pairs.size, counts=pairs
    )
    want = votes.collect_votes_reference(
        spec, offsets=offsets, positions=positions, top=top, n_cells=pairs.size
    )

    # The same votes, in any order.
    def rows(v: votes.CellVotes) -> np.ndarray:
        table = np.stack([v.slot, v.hyp, v.position], axis=1)
        return table[np.lexsort(table.T[::-1])]

    np.testing.assert_array_equal(rows(got), rows(want))
    assert got.slot.size == int(pairs[top].sum())


@needs_numba
def test_coarse_pass_compiled_equals_numpy(
    catalogue: list[np.ndarray], memory_index: FingerprintIndex
) -> None:
    search = SearchParams()
    hyps = hypothesis_grid(search, params=PARAMS, step_log2=search.coarse_step_log2)
    from matcher.identify import Matcher

    matcher = Matcher(memory_index, search=search)
    for episode, start_s, speed in [(0, 40.0, 1.0), (1, 75.0, 1.3), (2, 20.0, 0.8)]:
        a = round(start_s * SR)
        clip = catalogue[episode][a : a + round(6.0 * speed * SR)]
        if speed != 1.0:
            clip = change_speed(clip, factor=speed)
        peaks = matcher.peaks(clip)
        fast = _coarse_seeds(peaks, index=memory_index, search=search, hyps=hyps, compiled=True)
        slow = _coarse_seeds(peaks, index=memory_index, search=search, hyps=hyps, compiled=False)
        assert fast == slow
        assert fast


def test_lower_bound_compiled_equals_numpy() -> None:
    from matcher.index import _lower_bound, _lower_bound_numpy

    rng = np.random.default_rng(5)
    runs = [np.sort(rng.integers(0, 1000, size=int(n))) for n in rng.integers(0, 40, size=500)]
    values = np.concatenate(runs).astype(np.uint32)
    stops = np.cumsum([r.size for r in runs]).astype(np.int64)
    starts = stops - np.array([r.size for r in runs], np.int64)
    target = rng.integers(-5, 1005, size=starts.size).astype(np.int64)

    np.testing.assert_array_equal(
        _lower_bound(values, starts, stops, target),
        _lower_bound_numpy(values, starts, stops, target),
    )
