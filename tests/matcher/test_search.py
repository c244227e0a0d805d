"""The search: hypothesis grid, windowed look-ups against the slow reference, and finding clips
whose speed, tempo or pitch differ from the episode's (synthetic catalogue, seeded)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from bot.synth.degrade import change_speed
from matcher.hypotheses import hypothesis_grid, n_fine_hypotheses
from matcher.identify import Matcher
from matcher.index import FingerprintIndex
from matcher.params import FingerprintParams, SearchParams
from matcher.search import search, strongest_peaks

SR = 8000
PARAMS = FingerprintParams()


def _clip(catalogue: list[np.ndarray], episode: int, start_s: float, dur_s: float) -> np.ndarray:
    return catalogue[episode][round(start_s * SR) : round((start_s + dur_s) * SR)]


def test_grid_covers_three_lines_with_identity_once() -> None:
    hyps = hypothesis_grid(SearchParams(), params=PARAMS, step_log2=0.02)
    identity = (hyps.time_scale == 1.0) & (hyps.band_shift == 0.0)
    assert identity.sum() == 1 and identity[0]
    speed = hyps.family == 0
    # Resample: bands move with time (24 bands per octave).
    np.testing.assert_allclose(
        hyps.band_shift[speed], 24 * np.log2(hyps.time_scale[speed]), atol=1e-9
    )
    assert hyps.time_scale[speed].min() <= 0.76 and hyps.time_scale[speed].max() >= 1.58
    tempo, pitch = hyps.family == 1, hyps.family == 2
    assert np.all(hyps.band_shift[tempo] == 0) and np.all(hyps.time_scale[pitch] == 1)
    assert hyps.time_scale[tempo].min() <= 0.86 and hyps.time_scale[tempo].max() >= 1.24
    assert np.abs(hyps.band_shift[pitch]).max() >= 5.7  # ±3 semitones = ±6 bands


def test_wider_search_counts_more_cells() -> None:
    narrow = SearchParams(
        min_speed=1.0, max_speed=1.0, min_tempo=1.0, max_tempo=1.0, max_pitch_semitones=0.0
    )
    assert n_fine_hypotheses(narrow, params=PARAMS) == 1
    assert n_fine_hypotheses(SearchParams(), params=PARAMS) > 150


def test_lookup_window_matches_naive(
    memory_index: FingerprintIndex, rng: np.random.Generator
) -> None:
    keys = rng.integers(0, 1 << PARAMS.key_bits, size=3000)
    used = keys[memory_index.posting_counts(keys) > 0]
    lo = rng.integers(0, memory_index.total_frames, size=used.size)
    hi = lo + rng.integers(0, 20000, size=used.size)
    fast = memory_index.lookup_window(used, lo, hi)
    slow = memory_index.lookup_window_naive(used, lo, hi)
    assert fast.position.size > 0
    assert sorted(zip(fast.query_index.tolist(), fast.position.tolist(), strict=True)) == sorted(
        zip(slow.query_index.tolist(), slow.position.tolist(), strict=True)
    )


def test_postings_ascend_within_each_key(memory_index: FingerprintIndex) -> None:
    """lookup_window's binary search relies on it."""
    offsets = memory_index.offsets.astype(np.int64)
    diffs = np.diff(memory_index.positions.astype(np.int64))
    run_starts = offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < offsets[-1])]
    inside = np.ones(diffs.size, bool)
    inside[run_starts - 1] = False
    assert np.all(diffs[inside] >= 0)


def test_strongest_peaks_keep_order(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    peaks = Matcher(memory_index).peaks(_clip(catalogue, 1, 30.0, 5.0))
    few = strongest_peaks(peaks, per_s=10, frame_s=PARAMS.frame_s)
    assert 0 < len(few) <= 10 * 6
    order = np.lexsort((few.band, few.frame))
    assert np.array_equal(order, np.arange(len(few)))


@pytest.mark.parametrize("factor", [0.8, 1.25, 1.5])
def test_speed_change_found_with_its_factor(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray], factor: float
) -> None:
    clip = change_speed(_clip(catalogue, 3, 50.0, 10.0 * factor), factor=factor)
    result = Matcher(memory_index).identify(clip)
    assert result.status == "match" and result.best is not None
    assert result.best.episode == "S01E04"
    assert result.best.offset_s == pytest.approx(50.0, abs=1.0)
    assert result.best.speed == pytest.approx(factor, rel=0.01)
    assert result.best.pitch == pytest.approx(factor, rel=0.01)


@pytest.mark.slow  # librosa's phase vocoder: seconds on first use
def test_tempo_only_change(memory_index: FingerprintIndex, catalogue: list[np.ndarray]) -> None:
    clip = librosa.effects.time_stretch(_clip(catalogue, 2, 60.0, 11.5), rate=1.15)
    result = Matcher(memory_index).identify(clip.astype(np.float32))
    assert result.status == "match" and result.best is not None
    assert result.best.episode == "S01E03"
    assert result.best.offset_s == pytest.approx(60.0, abs=1.0)
    assert result.best.speed == pytest.approx(1.15, rel=0.02)
    assert result.best.pitch == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow
def test_pitch_only_change(memory_index: FingerprintIndex, catalogue: list[np.ndarray]) -> None:
    clip = librosa.effects.pitch_shift(_clip(catalogue, 4, 80.0, 10.0), sr=SR, n_steps=2)
    result = Matcher(memory_index).identify(clip.astype(np.float32))
    assert result.status == "match" and result.best is not None
    assert result.best.episode == "S01E05"
    assert result.best.offset_s == pytest.approx(80.0, abs=1.0)
    assert result.best.speed == pytest.approx(1.0, abs=0.01)
    assert result.best.pitch == pytest.approx(2 ** (2 / 12), rel=0.01)


def test_exact_only_search_misses_a_sped_up_clip(
    memory_index: FingerprintIndex, catalogue: list[np.ndarray]
) -> None:
    """Why the speed search is on: without it a 20% faster clip is not found."""
    clip = change_speed(_clip(catalogue, 3, 50.0, 12.0), factor=1.2)
    exact = SearchParams(
        min_speed=1.0, max_speed=1.0, min_tempo=1.0, max_tempo=1.0, max_pitch_semitones=0.0
    )
    peaks = Matcher(memory_index, search=exact).peaks(clip)
    found = search(peaks, index=memory_index, search=exact)
    assert not any(c.false_alarm_p <= exact.match_false_alarm_p for c in found)
