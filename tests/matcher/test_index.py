"""The CSR table: batched look-ups against the slow reference, and episode placement."""

from __future__ import annotations

import numpy as np
import pytest

from matcher.hashes import Hashes
from matcher.index import Episode, FingerprintIndex
from matcher.params import FingerprintParams

PARAMS = FingerprintParams()


def _episode(i: int, start: int, n_frames: int) -> Episode:
    return Episode(
        id=f"S01E{i + 1:02d}",
        season=1,
        number=i + 1,
        title=None,
        duration_s=n_frames / 62.5,
        checksum="x",
        start_frame=start,
        n_frames=n_frames,
    )


def _random_index(rng: np.random.Generator, n_keys: int = 300) -> FingerprintIndex:
    lengths = [5000, 3000, 8000]
    episodes, hashes, start = [], [], 0
    for i, n_frames in enumerate(lengths):
        n = int(rng.integers(500, 2000))
        key = rng.integers(0, n_keys, size=n).astype(np.uint32)
        frame = rng.integers(0, n_frames, size=n).astype(np.int32)
        episodes.append(_episode(i, start, n_frames))
        hashes.append(Hashes(key=key, anchor_frame=frame))
        start += n_frames
    return FingerprintIndex.from_hashes(params=PARAMS, episodes=episodes, hashes=hashes)


def test_lookup_matches_naive_reference(rng: np.random.Generator) -> None:
    index = _random_index(rng)
    keys = rng.integers(0, 400, size=250).astype(np.uint32)
    fast, slow = index.lookup(keys), index.lookup_naive(keys)
    fast_pairs = sorted(zip(fast.query_index.tolist(), fast.position.tolist(), strict=True))
    slow_pairs = sorted(zip(slow.query_index.tolist(), slow.position.tolist(), strict=True))
    assert fast_pairs == slow_pairs
    assert len(fast_pairs) > 0


def test_lookup_skips_overlong_posting_lists(rng: np.random.Generator) -> None:
    index = _random_index(rng, n_keys=3)  # every key has hundreds of postings
    keys = np.array([0, 1, 2], dtype=np.uint32)
    assert index.lookup(keys).position.size == index.posting_counts(keys).sum()
    assert index.lookup(keys, max_postings=10).position.size == 0


def test_positions_land_in_their_episode(rng: np.random.Generator) -> None:
    index = _random_index(rng)
    postings = index.lookup(np.arange(300, dtype=np.uint32))
    episode = index.episode_of(postings.position)
    starts = index.episode_starts[episode]
    lengths = np.array([e.n_frames for e in index.episodes])[episode]
    assert np.all(postings.position >= starts)
    assert np.all(postings.position < starts + lengths)


def test_offsets_match_key_layout() -> None:
    with pytest.raises(ValueError):
        FingerprintIndex(
            params=PARAMS,
            episodes=[],
            offsets=np.zeros(10, np.uint32),
            positions=np.zeros(0, np.uint32),
        )
