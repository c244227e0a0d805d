"""The coarse pass's voting loop: postings of the looked-up keys → votes per offset cell.

Each looked-up key (a query landmark under one hypothesis) votes with every posting of its key
for the cell `(position - shift + margin) // half_bin + window * n_bins`. A 3 s clip casts ~200 k
such votes on a 14-hour index, a 10 s clip up to the 1 M budget, and in numpy each vote passed
through a dozen whole-array temporaries (query index, gathered positions, shifts, cells, slot
look-ups): the coarse pass was two thirds of a query. Compiled, the same loop reads each posting
once and writes one counter, with no temporaries.

Two implementations with one contract, tested against each other: `count_cells` / `collect_votes`
(numba, used when numba imports) and `count_cells_reference` / `collect_votes_reference` (numpy,
the reference and the fallback). Both are pure functions of their arrays; the compiled ones
release the GIL, so two matcher threads vote in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoteSpec:
    """Where each looked-up key votes.

    key: int64 [shape=(k,)] hash keys, each with its postings in the index's CSR table.
    shift: int64 [shape=(k,)] subtracted from a posting's position to give the vote's position.
    window: int64 [shape=(k,)] the query window the key's anchor lies in.
    hyp: int64 [shape=(k,)] the hypothesis the key was hashed under.
    margin, half_bin, n_bins: cell = (position + margin) // half_bin + window * n_bins.
    """

    key: np.ndarray
    shift: np.ndarray
    window: np.ndarray
    hyp: np.ndarray
    margin: int
    half_bin: int
    n_bins: int


@dataclass(frozen=True)
class CellVotes:
    """The votes that fell in chosen cells: slot of the cell pair, hypothesis and position,
    int64 [shape=(m,)] each, in no particular order."""

    slot: np.ndarray
    hyp: np.ndarray
    position: np.ndarray


def count_cells_reference(
    spec: VoteSpec, *, offsets: np.ndarray, positions: np.ndarray, n_cells: int
) -> np.ndarray:
    """Votes per cell, int32 [shape=(n_cells,)] (numpy)."""
    qi, position = _votes_reference(spec, offsets=offsets, positions=positions)
    cell = (position + spec.margin) // spec.half_bin + spec.window[qi] * spec.n_bins
    return np.bincount(cell, minlength=n_cells).astype(np.int32)


def collect_votes_reference(
    spec: VoteSpec, *, offsets: np.ndarray, positions: np.ndarray, top: np.ndarray, n_cells: int
) -> CellVotes:
    """Votes of the cell pairs `top` (pair c holds cells c and c + 1; slot k is pair top[k]).

    A vote in cell c counts for pair c and for pair c - 1 when they are among `top` (numpy).
    """
    slot = np.full(n_cells + 1, -1, dtype=np.int64)
    slot[top] = np.arange(top.size)
    qi, position = _votes_reference(spec, offsets=offsets, positions=positions)
    cell = (position + spec.margin) // spec.half_bin + spec.window[qi] * spec.n_bins
    own, prev = slot[cell], slot[np.maximum(cell - 1, 0)]
    a, b = own >= 0, prev >= 0
    hyp = spec.hyp[qi]
    return CellVotes(
        slot=np.concatenate([own[a], prev[b]]).astype(np.int64),
        hyp=np.concatenate([hyp[a], hyp[b]]).astype(np.int64),
        position=np.concatenate([position[a], position[b]]).astype(np.int64),
    )


def _votes_reference(
    spec: VoteSpec, *, offsets: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    starts = offsets[spec.key].astype(np.int64)
    counts = offsets[spec.key + 1].astype(np.int64) - starts
    qi = np.repeat(np.arange(spec.key.size, dtype=np.int64), counts)
    run_start = np.cumsum(counts) - counts
    gather = np.repeat(starts - run_start, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    return qi, positions[gather].astype(np.int64) - spec.shift[qi]


try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the reference still works
    numba = None  # type: ignore[assignment]

if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _count_kernel(key, shift, window, offsets, positions, margin, half_bin, n_bins, out):  # type: ignore[no-untyped-def]
        for i in range(key.size):
            base = window[i] * n_bins
            add = margin - shift[i]
            for j in range(offsets[key[i]], offsets[key[i] + 1]):
                out[(np.int64(positions[j]) + add) // half_bin + base] += 1

    @numba.njit(cache=True, nogil=True)
    def _slot_of(cell, top_sorted, slot_sorted):  # type: ignore[no-untyped-def]
        i = np.searchsorted(top_sorted, cell)
        if i < top_sorted.size and top_sorted[i] == cell:
            return slot_sorted[i]
        return -1

    @numba.njit(cache=True, nogil=True)
    def _collect_kernel(  # type: ignore[no-untyped-def]
        key, shift, window, hyp, offsets, positions, margin, half_bin, n_bins,
        mark, top_sorted, slot_sorted, n,
    ):  # fmt: skip
        out_slot = np.empty(n, np.int64)
        out_hyp = np.empty(n, np.int64)
        out_pos = np.empty(n, np.int64)
        k = 0
        for i in range(key.size):
            base = window[i] * n_bins
            for j in range(offsets[key[i]], offsets[key[i] + 1]):
                position = np.int64(positions[j]) - shift[i]
                cell = (position + margin) // half_bin + base
                # One byte per cell says whether either pair the cell belongs to was chosen.
                if mark[cell] == 0:
                    continue
                s = _slot_of(cell, top_sorted, slot_sorted)
                if s >= 0:
                    out_slot[k], out_hyp[k], out_pos[k] = s, hyp[i], position
                    k += 1
                s = _slot_of(max(cell - 1, 0), top_sorted, slot_sorted)
                if s >= 0:
                    out_slot[k], out_hyp[k], out_pos[k] = s, hyp[i], position
                    k += 1
        return out_slot[:k], out_hyp[:k], out_pos[:k]


COMPILED = numba is not None


def count_cells(
    spec: VoteSpec, *, offsets: np.ndarray, positions: np.ndarray, n_cells: int
) -> np.ndarray:
    """Votes per cell, int32 [shape=(n_cells,)]; compiled when numba is there."""
    if not COMPILED:
        return count_cells_reference(spec, offsets=offsets, positions=positions, n_cells=n_cells)
    # int32 counters: half the cache footprint of int64 for a kernel that is all random writes.
    out = np.zeros(n_cells, np.int32)
    _count_kernel(
        spec.key, spec.shift, spec.window, offsets, positions,
        spec.margin, spec.half_bin, spec.n_bins, out,
    )  # fmt: skip
    return out


def collect_votes(
    spec: VoteSpec,
    *,
    offsets: np.ndarray,
    positions: np.ndarray,
    top: np.ndarray,
    n_cells: int,
    counts: np.ndarray,
) -> CellVotes:
    """See `collect_votes_reference`; compiled when numba is there.

    counts: votes per pair [shape=(n_cells,)] as `count_cells` gave them (pair c = cells c and
    c + 1), which says how many votes the chosen pairs hold before they are collected.
    """
    if not COMPILED:
        return collect_votes_reference(
            spec, offsets=offsets, positions=positions, top=top, n_cells=n_cells
        )
    top = np.asarray(top, np.int64)
    mark = np.zeros(n_cells + 2, np.uint8)
    mark[top] = 1
    mark[top + 1] = 1
    order = np.argsort(top)
    n = int(counts[top].astype(np.int64).sum())
    s, h, p = _collect_kernel(
        spec.key, spec.shift, spec.window, spec.hyp, offsets, positions,
        spec.margin, spec.half_bin, spec.n_bins,
        mark, top[order], order.astype(np.int64), n,
    )  # fmt: skip
    return CellVotes(slot=s, hyp=h, position=p)
