"""The show's characters: a voice each (pitch, vocal tract length, breathiness, loudness), and
the per-sample-rate tables that turn formant frequencies into spectral envelopes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class _Voice:
    """One character's voice."""

    f0_hz: float
    range_st: float  # intonation range, semitones
    formant_scale: float  # shorter vocal tract -> higher formants
    rate: float  # duration multiplier: < 1 speaks faster
    breath: float  # aspiration noise mixed into vowels, relative to voicing
    open_quotient: float  # fraction of a glottal period the folds are open
    loudness: float  # gain of this character's lines


# (f0 range in Hz, formant scale range): deep and mid male, two female, one child-like voice.
_VOICE_CLASSES = (
    ((82.0, 115.0), (0.94, 1.01)),
    ((110.0, 150.0), (1.0, 1.07)),
    ((170.0, 225.0), (1.1, 1.17)),
    ((195.0, 255.0), (1.14, 1.22)),
    ((245.0, 300.0), (1.24, 1.34)),
)

# Fricative and burst spectra (centre Hz, bandwidth Hz, level dB relative to a vowel): s, sh,
# f, p, t, k. Centres above Nyquist are pulled down to 0.45 sr.
_FRIC_SHAPES = (
    (5000, 2500, -10),
    (2700, 1200, -8),
    (3000, 6000, -22),
    (900, 1500, -12),
    (4000, 2500, -10),
    (1800, 800, -10),
)

GLOTTAL_N = 2048  # samples per glottal period in the pulse tables (a power of two)
FORMANT_STEP_HZ = 10.0  # formant tables are indexed in steps of this many Hz
_FORMANT_MAX_HZ = 5000.0
_BANDWIDTHS_HZ = (80.0, 100.0, 150.0)  # F1-F3


@dataclass(frozen=True)
class SpeechTables:
    """Per-sample-rate tables for the spectral envelope, built once."""

    hop: int  # samples per control block; STFT frames span two blocks
    window: np.ndarray  # sqrt-Hann [shape=(2 * hop,)]: analysis and synthesis sum to one
    freqs_hz: np.ndarray  # [shape=(n_bins,)]
    formants: tuple[np.ndarray, ...]  # per formant [shape=(n_steps, n_bins)] magnitude
    fricatives: np.ndarray  # [shape=(6, n_bins)] magnitude


def _resonance(freqs_hz: np.ndarray, centre_hz: np.ndarray, bandwidth_hz: float) -> np.ndarray:
    """|H| of a two-pole resonator with unity gain at 0 Hz, as in a cascade formant synthesiser."""
    f = freqs_hz[None, :]
    c = centre_hz[:, None]
    return c**2 / np.sqrt((c**2 - f**2) ** 2 + (bandwidth_hz * f) ** 2)


@lru_cache(maxsize=8)
def speech_tables(sr: int) -> SpeechTables:
    # ~32 ms frames: fine enough in frequency for formants, short enough for syllable timing.
    frame = 2 ** round(math.log2(0.032 * sr))
    hop = frame // 2
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)).astype(np.float32)
    freqs = np.fft.rfftfreq(frame, 1 / sr)
    centres = np.arange(1, int(min(_FORMANT_MAX_HZ, sr / 2) / FORMANT_STEP_HZ) + 1)
    centres_hz = np.r_[centres[0], centres] * FORMANT_STEP_HZ  # row 0 is never used
    formants = tuple(_resonance(freqs, centres_hz, bw).astype(np.float32) for bw in _BANDWIDTHS_HZ)
    neutral = np.prod(
        [
            _resonance(freqs, np.array([c]), bw)[0]
            for c, bw in zip((500, 1500, 2500), _BANDWIDTHS_HZ, strict=True)
        ],
        axis=0,
    )
    vowel_rms = np.sqrt(np.mean(neutral**2))
    rows = []
    for centre, bandwidth, level_db in _FRIC_SHAPES:
        c = min(centre, 0.45 * sr)
        row = 1 / np.sqrt(1 + ((freqs - c) / (bandwidth / 2)) ** 2) * (freqs / (freqs + 300))
        rows.append(row * vowel_rms * 10 ** (level_db / 20) / np.sqrt(np.mean(row**2)))
    return SpeechTables(hop, window, freqs, formants, np.array(rows, dtype=np.float32))


def _glottal_table(open_quotient: float) -> np.ndarray:
    """One period of glottal flow derivative (Rosenberg pulse), RMS 1 [shape=(N,)].

    The flow rises, falls, then the folds shut abruptly: that closure is the excitation's sharp
    edge and gives voiced speech its harmonics.
    """
    x = (np.arange(GLOTTAL_N) + 0.5) / GLOTTAL_N
    t_open, t_close = 0.6 * open_quotient, 0.4 * open_quotient
    rising = 0.5 * (1 - np.cos(np.pi * x / t_open))
    falling = np.cos(0.5 * np.pi * np.clip((x - t_open) / t_close, 0, 1))
    flow = np.where(x < t_open, rising, falling)
    derivative = np.diff(flow, append=flow[:1])
    # A touch of smoothing at closure keeps aliasing of the highest harmonics down.
    kernel = np.hanning(9)
    derivative = np.real(
        np.fft.ifft(np.fft.fft(derivative) * np.fft.fft(kernel / kernel.sum(), GLOTTAL_N))
    )
    derivative -= derivative.mean()
    derivative /= np.sqrt(np.mean(derivative**2))
    return derivative.astype(np.float32)


@dataclass(frozen=True)
class Cast:
    """The show's characters, as parallel arrays for vectorised planning [shape=(n_voices,)]."""

    f0_hz: np.ndarray
    range_st: np.ndarray
    formant_scale: np.ndarray
    rate: np.ndarray
    breath: np.ndarray
    loudness: np.ndarray
    pulses: np.ndarray  # [shape=(n_voices * N,)] flattened glottal tables
    upper: np.ndarray  # [shape=(n_voices, n_bins)] F4/F5 resonances


def make_cast(rng: np.random.Generator, *, sr: int) -> Cast:
    voices = [
        _Voice(
            f0_hz=rng.uniform(*f0_range),
            range_st=rng.uniform(3.0, 7.0),
            formant_scale=rng.uniform(*scale_range),
            rate=rng.uniform(0.8, 1.2),
            breath=rng.uniform(0.03, 0.12) * (1.5 if f0_range[0] > 160 else 1.0),
            open_quotient=rng.uniform(0.45, 0.7),
            loudness=10 ** (rng.uniform(-2.5, 2.5) / 20),
        )
        for f0_range, scale_range in _VOICE_CLASSES
    ]
    freqs = speech_tables(sr).freqs_hz
    upper = [
        _resonance(freqs, np.array([3500.0 * v.formant_scale]), 250.0)[0]
        * _resonance(freqs, np.array([4500.0 * v.formant_scale]), 300.0)[0]
        for v in voices
    ]

    def column(name: str) -> np.ndarray:
        return np.array([getattr(v, name) for v in voices])

    return Cast(
        f0_hz=column("f0_hz"),
        range_st=column("range_st"),
        formant_scale=column("formant_scale"),
        rate=column("rate"),
        breath=column("breath"),
        loudness=column("loudness"),
        pulses=np.concatenate([_glottal_table(v.open_quotient) for v in voices]),
        upper=np.array(upper, dtype=np.float32),
    )
