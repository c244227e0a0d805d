"""Tests for the synthetic episodes and degradations in `bot.synth`.

Properties the matcher's tests and benchmarks rely on: determinism, unrelated audio for
different seeds, exact intro and shared cues, and degradations that do what they say
(SNR, speed factor, band). No timing asserts: speed is measured in bench/.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from bot.synth.degrade import add_noise, band_limit, change_speed, mix, phone_recording, reverb
from bot.synth.episodes import episode_seed, make_catalogue, make_episode
from bot.synth.music import make_cues, make_intro

SR = 8000


@pytest.fixture(scope="module")
def intro() -> np.ndarray:
    return make_intro(sr=SR, seed=11)


@pytest.fixture(scope="module")
def episode() -> np.ndarray:
    return make_episode(sr=SR, duration_s=30.0, seed=3)


def _tone(freq_hz: float, duration_s: float) -> np.ndarray:
    t = np.arange(round(duration_s * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _max_xcorr(a: np.ndarray, b: np.ndarray) -> float:
    """Largest normalised cross-correlation over all lags (1.0: b is a copy of a, shifted)."""
    corr = signal.correlate(a.astype(np.float64), b.astype(np.float64), method="fft")
    return float(np.max(np.abs(corr)) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _template_match(y: np.ndarray, template: np.ndarray) -> float:
    """Best correlation of `template` with any same-length window of `y`, gain-independent."""
    y64, t64 = y.astype(np.float64), template.astype(np.float64)
    corr = signal.correlate(y64, t64, mode="valid", method="fft")
    cumulative = np.r_[0.0, np.cumsum(y64**2)]
    energy = cumulative[t64.size :] - cumulative[: -t64.size]
    return float(np.max(corr / (np.linalg.norm(t64) * np.sqrt(np.maximum(energy, 1e-12)))))


def _dominant_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size), n=8 * y.size))
    return float(np.argmax(spectrum) * SR / (8 * y.size))


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2)))


def _tone_level_db(y: np.ndarray, freq_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    k = round(freq_hz * y.size / SR)
    return float(20 * np.log10(spectrum[k - 2 : k + 3].max()))


# --- episodes ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_audio(episode: np.ndarray) -> None:
    again = make_episode(sr=SR, duration_s=30.0, seed=3)
    assert np.array_equal(episode, again)


@pytest.mark.parametrize("duration_s", [0.5, 12.34, 30.0])
def test_episode_length_dtype_and_peak(duration_s: float) -> None:
    y = make_episode(sr=SR, duration_s=duration_s, seed=1)
    assert y.dtype == np.float32
    assert y.shape == (round(duration_s * SR),)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) == pytest.approx(0.7, abs=1e-3)


def test_different_seeds_are_unrelated(episode: np.ndarray) -> None:
    other = make_episode(sr=SR, duration_s=30.0, seed=4)
    assert _max_xcorr(episode, other) < 0.1
    # The measure does see a shared segment when there is one.
    assert _max_xcorr(episode[SR:], episode) > 0.9


def test_episode_has_pauses_and_louder_stretches(episode: np.ndarray) -> None:
    # Dialogue means syllables, words and pauses: loudness over 50 ms frames varies widely.
    frames = episode[: episode.size // 400 * 400].reshape(-1, 400)
    level_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    assert np.percentile(level_db, 90) - np.percentile(level_db, 10) > 15


def test_intro_is_a_deterministic_theme(intro: np.ndarray) -> None:
    assert intro.dtype == np.float32
    assert 10.0 <= intro.size / SR <= 15.0
    assert np.max(np.abs(intro)) == pytest.approx(0.7, abs=1e-3)
    assert np.array_equal(intro, make_intro(sr=SR, seed=11))
    assert not np.array_equal(intro[: SR * 5], make_intro(sr=SR, seed=12)[: SR * 5])


def test_intro_opens_every_episode_sample_for_sample(intro: np.ndarray) -> None:
    a = make_episode(sr=SR, duration_s=25.0, seed=1, intro=intro)
    b = make_episode(sr=SR, duration_s=25.0, seed=2, intro=intro)
    assert np.array_equal(a[: intro.size], intro)
    assert np.array_equal(b[: intro.size], intro)
    assert _max_xcorr(a[intro.size :], b[intro.size :]) < 0.1
    assert np.max(np.abs(a)) == pytest.approx(0.7, abs=1e-3)


def test_episode_shorter_than_intro_is_the_intro_cut(intro: np.ndarray) -> None:
    y = make_episode(sr=SR, duration_s=4.0, seed=1, intro=intro)
    assert np.array_equal(y, intro[: 4 * SR])


def test_cues_are_short_deterministic_stingers() -> None:
    cues = make_cues(sr=SR, seed=5, n_cues=3)
    assert len(cues) == 3
    for cue in cues:
        assert cue.dtype == np.float32
        assert 0.5 <= cue.size / SR <= 4.5
        assert np.max(np.abs(cue)) == pytest.approx(0.7, abs=1e-3)
    again = make_cues(sr=SR, seed=5, n_cues=3)
    assert all(np.array_equal(x, y) for x, y in zip(cues, again, strict=True))


def test_catalogue_shares_intro_and_cues_but_not_content() -> None:
    episodes = make_catalogue(sr=SR, n_episodes=2, duration_s=110.0, seed=5)
    intro = make_intro(sr=SR, seed=5)
    cues = make_cues(sr=SR, seed=5)
    assert len(episodes) == 2
    for y in episodes:
        assert y.shape == (110 * SR,)
        assert np.array_equal(y[: intro.size], intro)
        # The first scene change uses one of the show's cues, scaled into the mix.
        assert max(_template_match(y, cue[: SR // 2]) for cue in cues) > 0.95
    a, b = (y[intro.size :] for y in episodes)
    assert _max_xcorr(a[: 30 * SR], b[: 30 * SR]) < 0.1


def test_episode_seeds_differ() -> None:
    seeds = {episode_seed(seed=5, index=i) for i in range(100)}
    assert len(seeds) == 100
    assert episode_seed(seed=5, index=0) != episode_seed(seed=6, index=0)


# --- degradations -----------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_add_noise_hits_requested_snr(episode: np.ndarray, snr_db: float) -> None:
    noisy = add_noise(episode, snr_db=snr_db, rng=7)
    assert noisy.dtype == np.float32
    assert noisy.shape == episode.shape
    assert _snr_db(episode, noisy) == pytest.approx(snr_db, abs=0.05)
    assert np.array_equal(noisy, add_noise(episode, snr_db=snr_db, rng=7))
    assert not np.array_equal(noisy, add_noise(episode, snr_db=snr_db, rng=8))


@pytest.mark.parametrize("snr_db", [-5.0, 6.0, 20.0])
def test_mix_puts_other_at_requested_snr(episode: np.ndarray, snr_db: float) -> None:
    music = make_intro(sr=SR, seed=2)  # shorter than the episode: it loops
    mixed = mix(episode, music, snr_db=snr_db)
    assert mixed.dtype == np.float32
    assert mixed.shape == episode.shape
    assert _snr_db(episode, mixed) == pytest.approx(snr_db, abs=0.05)


@pytest.mark.parametrize("factor", [0.8, 0.97, 1.1, 1.25])
def test_change_speed_scales_length_and_pitch(factor: float) -> None:
    tone = _tone(500.0, 2.0)
    fast = change_speed(tone, factor=factor)
    assert fast.dtype == np.float32
    assert abs(fast.size - tone.size / factor) <= 1
    middle = fast[fast.size // 4 : 3 * fast.size // 4]  # away from the filter's edge effects
    assert _dominant_hz(middle) == pytest.approx(500.0 * factor, rel=2e-3)


def test_change_speed_of_an_episode_keeps_its_content(episode: np.ndarray) -> None:
    back = change_speed(change_speed(episode, factor=1.25), factor=0.8)
    n = min(back.size, episode.size)
    # Speeding up drops what falls above the new Nyquist; the rest survives the round trip.
    assert np.corrcoef(back[:n], episode[:n])[0, 1] > 0.9


def test_band_limit_passes_the_band_and_cuts_the_rest() -> None:
    y = _tone(100.0, 2.0) + _tone(1000.0, 2.0) + _tone(3900.0, 2.0)
    phone = band_limit(y, sr=SR, low_hz=300.0, high_hz=3400.0)
    assert phone.dtype == np.float32
    assert phone.shape == y.shape
    assert _tone_level_db(phone, 1000.0) == pytest.approx(_tone_level_db(y, 1000.0), abs=1.0)
    assert _tone_level_db(y, 100.0) - _tone_level_db(phone, 100.0) > 30
    assert _tone_level_db(y, 3900.0) - _tone_level_db(phone, 3900.0) > 20
    low = band_limit(y, sr=SR, low_hz=0.0, high_hz=500.0)
    assert _tone_level_db(y, 1000.0) - _tone_level_db(low, 1000.0) > 20
    assert np.array_equal(band_limit(y, sr=SR, low_hz=0.0, high_hz=SR / 2), y)


def test_reverb_decays_at_the_requested_rate() -> None:
    impulse = np.zeros(SR, np.float32)
    impulse[SR // 10] = 1.0
    wet = reverb(impulse, sr=SR, rt60_s=0.4, rng=1)
    assert wet.dtype == np.float32
    assert wet.shape == impulse.shape
    assert np.sqrt(np.mean(wet.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(1 / SR))

    def energy_db(start_s: float) -> float:
        part = wet[round((0.1 + start_s) * SR) : round((0.15 + start_s) * SR)]
        return float(10 * np.log10(np.sum(part.astype(np.float64) ** 2)))

    # 60 dB over rt60_s: 30 dB between windows 0.2 s apart.
    assert energy_db(0.02) - energy_db(0.22) == pytest.approx(30, abs=6)
    assert np.array_equal(wet, reverb(impulse, sr=SR, rt60_s=0.4, rng=1))


def test_phone_recording_is_noisy_band_limited_and_clipped(episode: np.ndarray) -> None:
    phone = phone_recording(episode, sr=SR, rng=3)
    assert phone.dtype == np.float32
    assert phone.shape == episode.shape
    assert np.max(np.abs(phone)) <= 0.9
    clipped = np.mean(np.abs(phone) >= 0.9 - 1e-6)
    assert 1e-4 < clipped < 0.01
    low_in = _band_energy(episode, 0.0, 120.0) / _band_energy(episode, 500.0, 3000.0)
    low_out = _band_energy(phone, 0.0, 120.0) / _band_energy(phone, 500.0, 3000.0)
    assert low_out < low_in / 10
    assert np.array_equal(phone, phone_recording(episode, sr=SR, rng=3))


def _band_energy(y: np.ndarray, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    return float(spectrum[(freqs >= low_hz) & (freqs < high_hz)].sum())
