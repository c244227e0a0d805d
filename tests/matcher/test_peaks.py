"""Spectrogram peaks: where they land, how many there are, and what they ignore."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bot.synth.episodes import make_episode
from matcher.params import FingerprintParams
from matcher.peaks import audio2peaks, audio2spectrogram, band_frequencies_hz, spectrogram2peaks

PARAMS = FingerprintParams()
SR = PARAMS.sr


def _tone(freq_hz: float, duration_s: float, *, start_s: float = 0.0) -> np.ndarray:
    t = np.arange(round(duration_s * SR)) / SR
    y = np.zeros(round((start_s + duration_s) * SR), np.float32)
    y[round(start_s * SR) :] = 0.5 * np.sin(2 * np.pi * freq_hz * t)
    return y


def _tone_bursts(freqs_hz: list[float], *, burst_s: float = 0.25) -> np.ndarray:
    """Tone bursts one after the other, with silence between, so every burst makes a peak."""
    parts = []
    for f in freqs_hz:
        parts += [_tone(f, burst_s), np.zeros(round(burst_s * SR), np.float32)]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def episode() -> np.ndarray:
    return make_episode(sr=SR, duration_s=30.0, seed=11)


def test_spectrogram_shape_and_units(episode: np.ndarray) -> None:
    spec = audio2spectrogram(episode, params=PARAMS)
    expected_frames = 1 + (episode.size - PARAMS.n_fft) // PARAMS.hop_length
    assert spec.shape == (expected_frames, PARAMS.n_bands)
    assert spec.dtype == np.float32
    assert np.isfinite(spec).all()


def test_tone_peaks_at_its_band() -> None:
    freqs = [300.0, 700.0, 1500.0, 3000.0]
    peaks = audio2peaks(_tone_bursts(freqs), params=PARAMS, peaks_per_s=40)
    centres = band_frequencies_hz(PARAMS)
    found_hz = np.interp(peaks.band, np.arange(PARAMS.n_bands), centres)
    for f in freqs:
        # Within a quarter of a band: the parabolic interpolation is doing its job.
        closest = np.min(np.abs(np.log2(found_hz / f))) * PARAMS.bands_per_octave
        assert closest < 0.25, f


def test_peaks_are_local_maxima_of_the_spectrogram(episode: np.ndarray) -> None:
    """Checked against a slow, obvious reference: every peak is the maximum of its
    neighbourhood (the fast path uses the same filter; this guards the indexing around it)."""
    spec = audio2spectrogram(episode, params=PARAMS)
    peaks = spectrogram2peaks(spec, params=PARAMS, peaks_per_s=40)
    band = np.round(peaks.band).astype(int)
    rf, rb = PARAMS.peak_radius_frames, PARAMS.peak_radius_bands
    for f, b in list(zip(peaks.frame.tolist(), band.tolist(), strict=True))[::25]:
        hood = spec[max(0, f - rf) : f + rf + 1, max(0, b - rb) : b + rb + 1]
        assert spec[f, b] == hood.max()
    assert ndimage.maximum_filter(spec, size=(2 * rf + 1, 2 * rb + 1))[peaks.frame, band].size


def test_density_is_capped_per_second(episode: np.ndarray) -> None:
    counts = {}
    for per_s in (5, 10, 40):
        peaks = audio2peaks(episode, params=PARAMS, peaks_per_s=per_s)
        per_block = np.bincount(peaks.frame // round(1 / PARAMS.frame_s))
        assert per_block.max() <= per_s
        counts[per_s] = len(peaks)
    # Sparse settings reach their cap in nearly every second; dense ones keep every maximum.
    assert counts[5] >= 0.9 * 5 * 30
    assert counts[5] < counts[10] < counts[40]


def test_peaks_are_sorted_and_in_range(episode: np.ndarray) -> None:
    peaks = audio2peaks(episode, params=PARAMS, peaks_per_s=40)
    order = np.lexsort((peaks.band, peaks.frame))
    assert (order == np.arange(len(peaks))).all()
    assert peaks.frame.min() >= 0 and peaks.frame.max() < peaks.n_frames
    assert peaks.band.min() > 0 and peaks.band.max() < PARAMS.n_bands - 1
    assert np.isfinite(peaks.strength).all()


def test_silence_and_near_silence_give_no_peaks() -> None:
    assert len(audio2peaks(np.zeros(5 * SR, np.float32), params=PARAMS, peaks_per_s=40)) == 0
    hiss = np.random.default_rng(0).normal(0, 1e-7, 5 * SR).astype(np.float32)
    assert len(audio2peaks(hiss, params=PARAMS, peaks_per_s=40)) == 0


def test_tiny_input_is_handled() -> None:
    peaks = audio2peaks(np.zeros(10, np.float32), params=PARAMS, peaks_per_s=40)
    assert len(peaks) == 0 and peaks.n_frames == 1


def test_delay_moves_peaks_in_time_only(episode: np.ndarray) -> None:
    """Whole-frame delays shift peaks by exactly that many frames: offset voting relies on it."""
    delay_frames = 50
    delayed = np.concatenate([np.zeros(delay_frames * PARAMS.hop_length, np.float32), episode])
    a = audio2peaks(episode, params=PARAMS, peaks_per_s=40)
    b = audio2peaks(delayed, params=PARAMS, peaks_per_s=40)
    moved = set(zip((a.frame + delay_frames).tolist(), np.round(a.band, 2).tolist(), strict=True))
    seen = set(zip(b.frame.tolist(), np.round(b.band, 2).tolist(), strict=True))
    assert len(moved & seen) >= 0.95 * len(moved)


def test_head_and_window_select_by_frame(episode: np.ndarray) -> None:
    peaks = audio2peaks(episode, params=PARAMS, peaks_per_s=40)
    head = peaks.head(300)
    assert head.n_frames == 300 and (head.frame < 300).all()
    assert len(head) == int((peaks.frame < 300).sum())
    window = peaks.window(300, 600)
    assert len(window) == int(((peaks.frame >= 300) & (peaks.frame < 600)).sum())


def test_blocked_maxima_equal_the_whole_array_reference() -> None:
    """The fast per-block filters must find exactly the maxima whole-array filters find,
    across several block boundaries."""
    from matcher.peaks import _PEAK_BLOCK_FRAMES, _block_maxima, _local_maxima_reference

    y = make_episode(sr=SR, duration_s=_PEAK_BLOCK_FRAMES * 3.5 * PARAMS.frame_s, seed=3)
    spec = audio2spectrogram(y, params=PARAMS)
    floor_db = float(spec.max()) - 60.0
    blocks = [
        _block_maxima(spec, start, params=PARAMS, floor_db=floor_db)
        for start in range(0, spec.shape[0], _PEAK_BLOCK_FRAMES)
    ]
    ref_frame, ref_band, ref_strength = _local_maxima_reference(
        spec, params=PARAMS, floor_db=floor_db
    )
    frame = np.concatenate([b[0] for b in blocks])
    band = np.concatenate([b[1] for b in blocks])
    strength = np.concatenate([b[2] for b in blocks])
    fast = sorted(zip(frame.tolist(), band.tolist(), strict=True))
    slow = sorted(zip(ref_frame.tolist(), ref_band.tolist(), strict=True))
    assert fast == slow and len(fast) > 1000
    np.testing.assert_allclose(np.sort(strength), np.sort(ref_strength), atol=1e-4)
