"""Landmarks and hash keys: the vectorised pairing against a plain loop, and speed mapping."""

from __future__ import annotations

import numpy as np

from matcher.hashes import landmarks2hashes, peaks2hashes, peaks2landmarks
from matcher.params import FingerprintParams
from matcher.peaks import Peaks

PARAMS = FingerprintParams()


def _random_peaks(rng: np.random.Generator, n: int = 400) -> Peaks:
    frame = np.sort(rng.integers(0, 2000, size=n)).astype(np.int32)
    band = rng.uniform(1, PARAMS.n_bands - 2, size=n).astype(np.float32)
    order = np.lexsort((band, frame))
    return Peaks(frame[order], band[order], np.ones(n, np.float32), n_frames=2000)


def _landmarks_naive(peaks: Peaks, *, fan_out: int, max_dt: int, max_dband: float) -> set:
    pairs = set()
    for i in range(len(peaks)):
        taken = 0
        for j in range(i + 1, len(peaks)):
            dt = peaks.frame[j] - peaks.frame[i]
            if dt > max_dt:
                break
            if dt >= 1 and abs(peaks.band[j] - peaks.band[i]) <= max_dband and taken < fan_out:
                pairs.add((i, j))
                taken += 1
    return pairs


def test_landmarks_match_naive_pairing(rng: np.random.Generator) -> None:
    peaks = _random_peaks(rng)
    lm = peaks2landmarks(peaks, fan_out=5, max_dt_frames=40, max_dband=20)
    got = set(zip(lm.anchor.tolist(), lm.target.tolist(), strict=True))
    assert got == _landmarks_naive(peaks, fan_out=5, max_dt=40, max_dband=20)


def test_keys_fit_layout_and_unpack(rng: np.random.Generator) -> None:
    peaks = _random_peaks(rng)
    hashes = peaks2hashes(peaks, params=PARAMS)
    assert hashes.key.dtype == np.uint32
    assert int(hashes.key.max()) < (1 << PARAMS.key_bits)
    dt = hashes.key & ((1 << PARAMS.dt_bits) - 1)
    assert dt.min() >= 1 and dt.max() <= PARAMS.max_dt_frames


def test_speed_mapping_recovers_reference_keys(rng: np.random.Generator) -> None:
    """Peaks of a clip sped up by s, mapped back with time_scale=s, give the original keys."""
    peaks = _random_peaks(rng)
    ref = peaks2hashes(peaks, params=PARAMS)
    speed = 1.25
    shift = PARAMS.bands_per_octave * np.log2(speed)
    # Frames shrink by the speed and bands move up: what a resampled clip shows.
    fast = Peaks(
        (peaks.frame / speed).astype(np.float64),  # exact, unrounded frames for this check
        peaks.band + shift,
        peaks.strength,
        n_frames=int(2000 / speed),
    )
    lm = peaks2landmarks(
        peaks,
        fan_out=PARAMS.ref_fan_out,
        max_dt_frames=PARAMS.max_dt_frames,
        max_dband=PARAMS.max_dband,
    )
    mapped = landmarks2hashes(fast, lm, params=PARAMS, time_scale=speed, band_shift=shift)
    assert np.array_equal(np.sort(mapped.key), np.sort(ref.key))


def test_empty_and_single_peak() -> None:
    empty = Peaks(np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.float32), 0)
    assert len(peaks2hashes(empty, params=PARAMS)) == 0
    one = Peaks(np.array([3], np.int32), np.array([10.0], np.float32), np.ones(1, np.float32), 9)
    assert len(peaks2hashes(one, params=PARAMS)) == 0
