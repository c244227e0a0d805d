"""Synthetic TV-episode audio for tests, the offline demo and benchmarks.

An episode is an optional theme intro followed by scenes: dialogue between a few recurring
characters (glottal pulses at an intonation contour, shaped by gliding formants, with fricatives,
plosive bursts and pauses), quiet music beds under some scenes, louder music-only montages, room
tone, and stingers between scenes, some of them cues shared by every episode of the show. That
gives a fingerprinter the difficulties of a real show: speech over music, silence between lines,
near-repeats inside an episode (looping beds) and exact repeats across episodes (intro, cues).
Degradations (noise, music on top, speed change, band limit, reverb, a phone recording) turn an
excerpt into a realistic query.

Everything is generated from integer seeds with numpy/scipy, vectorised (a 20-minute episode at
8 kHz takes a fraction of a second): the same arguments always give the same samples, and
different seeds share nothing but the intro and cues they are given.
This module must never read or download recordings, and the matcher must never import it: it
exists to exercise the matcher, not to be part of it.
"""

from __future__ import annotations

import math
import os
import wave
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy import signal

# Peak level of generated audio: headroom for mixing degradations on top without clipping.
_PEAK = 0.7
# Dialogue lines are normalised to this RMS before the final peak normalisation; every other
# level in an episode is set relative to it.
_SPEECH_RMS = 0.1

# Stream tags: intro, cues, cast and episodes drawn from one integer seed must not share a random
# stream, or `make_intro(seed=1)` and `make_episode(seed=1)` would begin with the same choices.
_TAG_INTRO, _TAG_CUES, _TAG_CAST, _TAG_EPISODE, _TAG_CATALOGUE = range(1, 6)


def _rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng([tag, seed % 2**63])


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    # default_rng returns a Generator unchanged, so callers may pass either.
    return np.random.default_rng(rng)


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0


def _mix_in(buf: np.ndarray, start: int, sound: np.ndarray, gain: float = 1.0) -> None:
    """Add `gain * sound` into `buf` at sample `start`, cropping whatever falls outside."""
    lo = max(start, 0)
    hi = min(start + sound.size, buf.size)
    if hi > lo:
        buf[lo:hi] += np.float32(gain) * sound[lo - start : hi - start]


def _fade(y: np.ndarray, *, n_in: int, n_out: int) -> np.ndarray:
    n_in, n_out = min(n_in, y.size), min(n_out, y.size)
    if n_in:
        y[:n_in] *= np.linspace(0.0, 1.0, n_in, dtype=np.float32)
    if n_out:
        y[y.size - n_out :] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)
    return y


def _white(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform white noise, RMS ~1, float32 [shape=(n,)].

    int8 draws are ~15x cheaper than Gaussian ones and just as white; the speech and the room
    tone need millions of noise samples per episode.
    """
    ints = rng.integers(-128, 128, size=n, dtype=np.int8)
    return np.multiply(ints, np.float32(1 / 73.9), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Speech


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

# Vowel formants F1-F3 in Hz for an adult male voice (Peterson & Barney, 1952, averages).
_VOWELS_HZ = np.array(
    [
        [270, 2290, 3010],  # i (beet)
        [390, 1990, 2550],  # I (bit)
        [530, 1840, 2480],  # e (bet)
        [660, 1720, 2410],  # ae (bat)
        [730, 1090, 2440],  # a (father)
        [570, 840, 2410],  # o (bought)
        [440, 1020, 2240],  # U (book)
        [300, 870, 2240],  # u (boot)
        [640, 1190, 2390],  # ^ (but)
        [490, 1350, 1690],  # er (bird)
        [500, 1500, 2500],  # schwa
    ],
    dtype=np.float64,
)
_STRESSED_VOWELS = np.arange(10)
_UNSTRESSED_VOWELS = np.array([10, 10, 10, 1, 6, 8])

# Segment kinds. Each kind says how it is voiced and shaped: pulses or noise excite it, formants
# (vowels, nasals, /h/) or a fixed noise spectrum (fricatives, bursts) shape it.
_SIL, _VOWEL, _NASAL, _ASPIR, _FRIC_S, _FRIC_SH, _FRIC_F, _BURST_P, _BURST_T, _BURST_K = range(10)
_KIND_VOICED = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
_KIND_NOISE = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], dtype=np.float32)
_KIND_FORMANT_GAIN = np.array([0, 1, 0.3, 0.5, 0, 0, 0, 0, 0, 0], dtype=np.float32)
_KIND_FRIC_GAIN = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=np.float32)
_KIND_FRIC_ROW = np.array([0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
_KIND_MIN_S = np.array([0, 0, 0.045, 0.03, 0.07, 0.07, 0.05, 0.01, 0.01, 0.012])
_KIND_MAX_S = np.array([0, 0, 0.08, 0.06, 0.12, 0.12, 0.1, 0.02, 0.02, 0.025])
# Where formants point during a consonant (its locus): vowels glide from and to it, the way
# real formant transitions reveal the place of articulation. NaN: no target of its own.
_KIND_LOCUS_HZ = np.array(
    [
        [np.nan] * 3,
        [np.nan] * 3,
        [250, 1200, 2300],  # nasal murmur
        [np.nan] * 3,
        [350, 1700, 2600],  # s (alveolar)
        [350, 1900, 2500],  # sh
        [350, 1000, 2300],  # f (labial)
        [350, 900, 2200],  # p
        [350, 1750, 2650],  # t
        [350, 2000, 2300],  # k (velar pinch)
    ]
)
_ONSET_KINDS = np.array(
    [_SIL, _NASAL, _ASPIR, _FRIC_S, _FRIC_SH, _FRIC_F, _BURST_P, _BURST_T, _BURST_K]
)
_ONSET_P = np.array([0.22, 0.14, 0.06, 0.13, 0.05, 0.08, 0.1, 0.13, 0.09])
_CODA_KINDS = np.array([_SIL, _NASAL, _FRIC_S, _FRIC_F, _BURST_T, _BURST_K])
_CODA_P = np.array([0.5, 0.2, 0.12, 0.04, 0.09, 0.05])
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

_GLOTTAL_N = 2048  # samples per glottal period in the pulse tables (a power of two)
_FORMANT_STEP_HZ = 10.0  # formant tables are indexed in steps of this many Hz
_FORMANT_MAX_HZ = 5000.0
_BANDWIDTHS_HZ = (80.0, 100.0, 150.0)  # F1-F3


@dataclass(frozen=True)
class _SpeechTables:
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
def _speech_tables(sr: int) -> _SpeechTables:
    # ~32 ms frames: fine enough in frequency for formants, short enough for syllable timing.
    frame = 2 ** round(math.log2(0.032 * sr))
    hop = frame // 2
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)).astype(np.float32)
    freqs = np.fft.rfftfreq(frame, 1 / sr)
    centres = np.arange(1, int(min(_FORMANT_MAX_HZ, sr / 2) / _FORMANT_STEP_HZ) + 1)
    centres_hz = np.r_[centres[0], centres] * _FORMANT_STEP_HZ  # row 0 is never used
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
    return _SpeechTables(hop, window, freqs, formants, np.array(rows, dtype=np.float32))


def _glottal_table(open_quotient: float) -> np.ndarray:
    """One period of glottal flow derivative (Rosenberg pulse), RMS 1 [shape=(N,)].

    The flow rises, falls, then the folds shut abruptly: that closure is the excitation's sharp
    edge and gives voiced speech its harmonics.
    """
    x = (np.arange(_GLOTTAL_N) + 0.5) / _GLOTTAL_N
    t_open, t_close = 0.6 * open_quotient, 0.4 * open_quotient
    rising = 0.5 * (1 - np.cos(np.pi * x / t_open))
    falling = np.cos(0.5 * np.pi * np.clip((x - t_open) / t_close, 0, 1))
    flow = np.where(x < t_open, rising, falling)
    derivative = np.diff(flow, append=flow[:1])
    # A touch of smoothing at closure keeps aliasing of the highest harmonics down.
    kernel = np.hanning(9)
    derivative = np.real(
        np.fft.ifft(np.fft.fft(derivative) * np.fft.fft(kernel / kernel.sum(), _GLOTTAL_N))
    )
    derivative -= derivative.mean()
    derivative /= np.sqrt(np.mean(derivative**2))
    return derivative.astype(np.float32)


@dataclass(frozen=True)
class _Cast:
    """The show's characters, as parallel arrays for vectorised planning [shape=(n_voices,)]."""

    f0_hz: np.ndarray
    range_st: np.ndarray
    formant_scale: np.ndarray
    rate: np.ndarray
    breath: np.ndarray
    loudness: np.ndarray
    pulses: np.ndarray  # [shape=(n_voices * N,)] flattened glottal tables
    upper: np.ndarray  # [shape=(n_voices, n_bins)] F4/F5 resonances


def _make_cast(rng: np.random.Generator, *, sr: int) -> _Cast:
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
    freqs = _speech_tables(sr).freqs_hz
    upper = [
        _resonance(freqs, np.array([3500.0 * v.formant_scale]), 250.0)[0]
        * _resonance(freqs, np.array([4500.0 * v.formant_scale]), 300.0)[0]
        for v in voices
    ]

    def column(name: str) -> np.ndarray:
        return np.array([getattr(v, name) for v in voices])

    return _Cast(
        f0_hz=column("f0_hz"),
        range_st=column("range_st"),
        formant_scale=column("formant_scale"),
        rate=column("rate"),
        breath=column("breath"),
        loudness=column("loudness"),
        pulses=np.concatenate([_glottal_table(v.open_quotient) for v in voices]),
        upper=np.array(upper, dtype=np.float32),
    )


def _draw(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices drawn with probabilities `p` (rng.choice with p is slow for small arrays)."""
    cdf = np.cumsum(p)
    return np.searchsorted(cdf / cdf[-1], rng.random(n), side="right")


@dataclass(frozen=True)
class _Segments:
    """A sequence of speech segments, parallel arrays [shape=(n,)] (formants (n, 3))."""

    kind: np.ndarray
    blocks: np.ndarray  # duration in control blocks
    voice: np.ndarray
    st: np.ndarray  # pitch, semitones from the voice's base f0
    gain: np.ndarray
    f_on: np.ndarray  # formant targets, Hz: start (vowels) or locus (consonants)
    f_off: np.ndarray  # formant targets at the end of a vowel (diphthongs differ)


@dataclass(frozen=True)
class _Syllables:
    """Where each syllable sits in words, phrases and lines [shape=(n,)]."""

    line: np.ndarray
    stressed: np.ndarray
    word_end: np.ndarray
    phrase_end: np.ndarray
    line_end: np.ndarray
    line_position: np.ndarray  # 0 at a line's first syllable, 1 at its last
    line_tail: np.ndarray  # a line's last two syllables (where a question rises)


def _syllables(n_lines: int, rng: np.random.Generator) -> _Syllables:
    """Lines of 2-12 words, words of 1-3 syllables, one stress per word, phrases of words."""
    words = rng.integers(2, 13, n_lines)
    word_line = np.repeat(np.arange(n_lines), words)
    n_words = word_line.size
    per_word = _draw(np.array([0.62, 0.28, 0.10]), n_words, rng) + 1
    word = np.repeat(np.arange(n_words), per_word)
    n = word.size
    in_word = np.arange(n) - (np.cumsum(per_word) - per_word)[word]
    stressed = in_word == (rng.random(n_words) * per_word).astype(int)[word]
    # Short function words ("the", "of") go unstressed.
    stressed &= ~((per_word[word] == 1) & (rng.random(n) < 0.35))
    word_end = in_word == per_word[word] - 1
    last_word = np.r_[word_line[1:] != word_line[:-1], True]
    line = word_line[word]
    counts = np.bincount(line, minlength=n_lines)
    in_line = np.arange(n) - (np.cumsum(counts) - counts)[line]
    return _Syllables(
        line=line,
        stressed=stressed,
        word_end=word_end,
        phrase_end=word_end & ((rng.random(n_words) < 0.18) | last_word)[word],
        line_end=word_end & last_word[word],
        line_position=in_line / np.maximum(counts[line] - 1, 1),
        line_tail=in_line >= counts[line] - 2,
    )


def _durations_s(syl: _Syllables, kinds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seconds per slot [shape=(n, 6)]: closure, onset, vowel, coda closure, coda, gap."""
    n = syl.line.size
    onset, coda = kinds[:, 1], kinds[:, 4]
    dur = np.empty((n, 6))
    dur[:, 0] = np.where(onset >= _BURST_P, rng.uniform(0.04, 0.07, n), 0)
    dur[:, 1] = rng.uniform(_KIND_MIN_S[onset], _KIND_MAX_S[onset])
    dur[:, 2] = rng.uniform(0.06, 0.14, n) * np.where(syl.stressed, 1.45, 1)
    dur[:, 2] *= np.where(syl.phrase_end, 1.35, 1)
    dur[:, 3] = np.where(coda >= _BURST_P, rng.uniform(0.03, 0.06, n), 0)
    dur[:, 4] = rng.uniform(_KIND_MIN_S[coda], _KIND_MAX_S[coda])
    word_gap = np.where(rng.random(n) < 0.45, rng.uniform(0.03, 0.12, n), 0)
    dur[:, 5] = np.where(syl.phrase_end, rng.uniform(0.22, 0.6, n), syl.word_end * word_gap)
    return dur


def _formant_targets(
    syl: _Syllables, kinds: np.ndarray, scale: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Formant targets per slot [shape=(n, 6, 3)]: vowel start and end, or consonant locus."""
    n = syl.line.size
    vowel = np.where(
        syl.stressed,
        rng.integers(0, _STRESSED_VOWELS.size, n),
        _UNSTRESSED_VOWELS[rng.integers(0, _UNSTRESSED_VOWELS.size, n)],
    )
    diphthong = syl.stressed & (rng.random(n) < 0.15)
    second = np.where(diphthong, rng.integers(0, _STRESSED_VOWELS.size, n), vowel)
    f_on = _KIND_LOCUS_HZ[kinds] * scale[:, None, None]
    f_off = f_on.copy()
    jitter = scale[:, None] * rng.uniform(0.96, 1.04, (n, 1))
    f_on[:, 2] = _VOWELS_HZ[vowel] * jitter
    f_off[:, 2] = _VOWELS_HZ[second] * jitter * rng.uniform(0.98, 1.02, (n, 1))
    return f_on, f_off


def _intonation(
    syl: _Syllables, range_st: np.ndarray, n_lines: int, rng: np.random.Generator
) -> np.ndarray:
    """Pitch per syllable in semitones: line declination, stress accents, question rises."""
    n = syl.line.size
    st = range_st * (0.35 - 0.7 * syl.line_position + syl.stressed * rng.uniform(0.25, 0.6, n))
    st += rng.normal(0, 0.4, n)
    question = rng.random(n_lines) < 0.2
    return st + syl.line_tail * question[syl.line] * range_st * 0.8


def _slot_gains(syl: _Syllables, rng: np.random.Generator) -> np.ndarray:
    """Loudness per slot [shape=(n, 6)]: stressed vowels stand out, consonants vary."""
    n = syl.line.size
    gain = np.repeat(rng.uniform(0.7, 1.2, n)[:, None], 6, axis=1)
    gain[:, 2] = np.where(syl.stressed, 1.0, 0.55) * rng.uniform(0.85, 1.15, n)
    return gain


def _speaker_turns(n_speakers: int, n_lines: int, rng: np.random.Generator) -> np.ndarray:
    """Which of the scene's speakers says each line: mostly alternating, sometimes continuing."""
    change = np.where(rng.random(n_lines) < 0.85, rng.integers(1, max(n_speakers, 2), n_lines), 0)
    change[0] = rng.integers(n_speakers)
    return np.cumsum(change) % n_speakers


@dataclass(frozen=True)
class _Dialogue:
    segments: _Segments
    line_start: np.ndarray  # first block of each line
    line_stop: np.ndarray  # block after each line's last sound
    line_gain: np.ndarray  # each line's loudness (voice and delivery)


def _plan_dialogue(
    n_blocks: int, cast: _Cast, rng: np.random.Generator, *, hop_s: float
) -> _Dialogue:
    """Lines between 2-3 characters with gaps, filling at most `n_blocks` blocks.

    Planned for all lines at once: more lines than can fit are drawn (arrays are cheap, Python
    calls per line are not) and those that do not fit are dropped. Each syllable is six slots:
    closure, onset, vowel, coda closure, coda, gap; slots it does not use last zero blocks.
    """
    n_lines = round(n_blocks * hop_s / 1.2) + 2
    cast_size = cast.f0_hz.size
    speakers = rng.choice(cast_size, size=min(cast_size, int(rng.integers(2, 4))), replace=False)
    line_voice = speakers[_speaker_turns(speakers.size, n_lines, rng)]
    syl = _syllables(n_lines, rng)
    n = syl.line.size
    voice = line_voice[syl.line]
    onset = _ONSET_KINDS[_draw(_ONSET_P, n, rng)]
    coda = _CODA_KINDS[_draw(_CODA_P, n, rng)]
    sil, vow = np.full(n, _SIL), np.full(n, _VOWEL)
    kinds = np.stack([sil, onset, vow, sil, coda, sil], axis=1)
    dur_s = _durations_s(syl, kinds, rng) * cast.rate[voice][:, None]
    # Most replies leave a beat; some come straight in.
    quick = rng.random(n_lines) < 0.2
    line_gap_s = np.where(quick, rng.uniform(0.03, 0.1, n_lines), rng.uniform(0.15, 0.9, n_lines))
    dur_s[:, 5] = np.where(syl.line_end, line_gap_s[syl.line], dur_s[:, 5])
    blocks = np.where(dur_s > 0, np.maximum(1, np.rint(dur_s / hop_s)), 0).astype(np.int64)

    lead = min(n_blocks, int(rng.integers(5, 60)))
    flat = blocks.ravel()
    starts = (lead + np.cumsum(flat) - flat).reshape(n, 6)
    last = np.flatnonzero(syl.line_end)
    first = np.r_[0, last[:-1] + 1]
    line_end = starts[last, 5] + blocks[last, 5]
    n_fit = int(np.searchsorted(line_end, n_blocks, side="right"))
    m = int(first[n_fit]) if n_fit < n_lines else n

    st = _intonation(syl, cast.range_st[voice], n_lines, rng)
    f_on, f_off = _formant_targets(syl, kinds, cast.formant_scale[voice], rng)
    gain = _slot_gains(syl, rng)
    keep = flat[: 6 * m] > 0
    used = lead + int(flat[: 6 * m].sum())
    nan3 = np.full((1, 3), np.nan)
    segments = _Segments(
        kind=np.r_[_SIL, kinds.ravel()[: 6 * m][keep], _SIL],
        blocks=np.r_[lead, flat[: 6 * m][keep], n_blocks - used],
        voice=np.r_[0, np.repeat(voice[:m], 6)[keep], 0],
        st=np.r_[0, np.repeat(st[:m], 6)[keep], 0],
        gain=np.r_[0, gain[:m].ravel()[keep], 0],
        f_on=np.concatenate([nan3, f_on[:m].reshape(-1, 3)[keep], nan3]),
        f_off=np.concatenate([nan3, f_off[:m].reshape(-1, 3)[keep], nan3]),
    )
    delivery = 10 ** (rng.normal(0, 1.5, n_lines) / 20)
    return _Dialogue(
        segments,
        line_start=starts[first[:n_fit], 0],
        line_stop=starts[last[:n_fit], 5],
        line_gain=(cast.loudness[line_voice] * delivery)[:n_fit],
    )


@dataclass(frozen=True)
class _Controls:
    """Speech controls per block of `hop` samples [shape=(n_blocks,)]; formants (n_blocks, 3)."""

    kind: np.ndarray
    voice: np.ndarray
    f0_hz: np.ndarray
    voiced: np.ndarray  # pulse gain
    noise: np.ndarray  # noise gain
    formant_gain: np.ndarray
    fric_gain: np.ndarray
    formants_hz: np.ndarray


def _formant_tracks(segs: _Segments, starts: np.ndarray, n_blocks: int) -> np.ndarray:
    """Formant frequencies per block [shape=(n_blocks, 3)], gliding between segment targets."""
    vowel = segs.kind == _VOWEL
    located = ~vowel & np.isfinite(segs.f_on[:, 0])
    pos = np.concatenate(
        [
            starts[vowel] + 0.25 * segs.blocks[vowel],
            starts[vowel] + 0.75 * segs.blocks[vowel],
            starts[located] + 0.5 * segs.blocks[located],
        ]
    )
    targets = np.concatenate([segs.f_on[vowel], segs.f_off[vowel], segs.f_on[located]])
    if pos.size == 0:
        return np.full((n_blocks, 3), 500.0)
    order = np.argsort(pos, kind="stable")
    centres = np.arange(n_blocks) + 0.5
    return np.stack([np.interp(centres, pos[order], targets[order, k]) for k in range(3)], axis=1)


def _controls(segs: _Segments, cast: _Cast, rng: np.random.Generator) -> _Controls:
    blocks = segs.blocks
    starts = np.cumsum(blocks) - blocks
    n_blocks = int(blocks.sum())
    kind = np.repeat(segs.kind, blocks)
    voice = np.repeat(segs.voice, blocks)
    position = np.arange(n_blocks) - np.repeat(starts, blocks)
    length = np.repeat(blocks, blocks)
    # Syllable loudness swells and fades over the vowel.
    shape = np.where(kind == _VOWEL, np.sin(np.pi * (position + 0.5) / length) ** 0.6, 1.0)
    st = np.convolve(np.repeat(segs.st, blocks), np.ones(5) / 5, mode="same")
    st += rng.normal(0, 0.08, n_blocks)
    gain = np.repeat(segs.gain, blocks)
    return _Controls(
        kind=kind,
        voice=voice,
        f0_hz=cast.f0_hz[voice] * 2 ** (st / 12),
        voiced=_KIND_VOICED[kind],
        noise=_KIND_NOISE[kind] + (kind == _VOWEL) * cast.breath[voice].astype(np.float32),
        formant_gain=(_KIND_FORMANT_GAIN[kind] * gain * shape).astype(np.float32),
        fric_gain=(_KIND_FRIC_GAIN[kind] * gain).astype(np.float32),
        formants_hz=_formant_tracks(segs, starts, n_blocks),
    )


def _excitation(
    c: _Controls, cast: _Cast, rng: np.random.Generator, *, sr: int, hop: int
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of sounding blocks, their glottal pulses plus noise [shape=(n_sounding, hop)]).

    The phase is accumulated per block (float64) and extended linearly inside each block
    (float32, small values): no per-sample cumulative sum. Pauses are skipped altogether.
    """
    step = c.f0_hz * (hop / sr)  # cycles per block
    start = np.cumsum(step) - step
    start -= np.floor(start)
    sounding = np.flatnonzero((c.voiced > 0) | (c.noise > 0))
    ramp = np.arange(hop, dtype=np.float32) / np.float32(hop)
    phase = start[sounding].astype(np.float32)[:, None]
    phase = phase + step[sounding].astype(np.float32)[:, None] * ramp
    # The table length is a power of two, so wrapping the phase is a bit mask.
    index = (phase * np.float32(_GLOTTAL_N)).astype(np.int32)
    index &= _GLOTTAL_N - 1
    index += (c.voice[sounding] * _GLOTTAL_N).astype(np.int32)[:, None]
    pulses = cast.pulses[index]
    pulses *= c.voiced[sounding, None]
    ints = rng.integers(-128, 128, size=pulses.shape, dtype=np.int8)
    pulses += np.multiply(ints, c.noise[sounding, None] / np.float32(73.9), dtype=np.float32)
    return sounding, pulses


@dataclass(frozen=True)
class _Frames:
    """Controls of the sounding STFT frames [shape=(n,)]; frame j spans blocks j-1 and j."""

    index: np.ndarray  # frame numbers j
    steps: np.ndarray  # [shape=(n, 3)] rows of the formant tables
    voice: np.ndarray
    formant_gain: np.ndarray
    fric_gain: np.ndarray
    fric_row: np.ndarray


def _frames(c: _Controls, tables: _SpeechTables) -> _Frames:
    """Frame controls are the mean of the two blocks a frame spans; silent frames are left out."""

    def pair_mean(x: np.ndarray) -> np.ndarray:
        padded = np.concatenate([x[:1] * 0, x, x[-1:] * 0])
        return 0.5 * (padded[:-1] + padded[1:])

    formant_gain, fric_gain = pair_mean(c.formant_gain), pair_mean(c.fric_gain)
    index = np.flatnonzero((formant_gain > 0) | (fric_gain > 0))
    edge = np.concatenate([c.formants_hz[:1], c.formants_hz, c.formants_hz[-1:]])
    formants = 0.5 * (edge[:-1] + edge[1:])[index]
    n_steps = tables.formants[0].shape[0]
    # A frame straddling a vowel and a fricative takes the louder neighbour's noise spectrum.
    padded = np.r_[np.float32(0), c.fric_gain, np.float32(0)]
    kind = np.r_[c.kind[:1], c.kind, c.kind[-1:]]
    louder = np.where(padded[:-1] > padded[1:], kind[:-1], kind[1:])[index]
    return _Frames(
        index=index,
        steps=np.clip(np.rint(formants / _FORMANT_STEP_HZ), 1, n_steps - 1).astype(np.intp),
        voice=np.r_[c.voice, c.voice[-1:]][index],
        formant_gain=formant_gain[index],
        fric_gain=fric_gain[index],
        fric_row=_KIND_FRIC_ROW[louder],
    )


def _envelopes(f: _Frames, part: slice, cast: _Cast, tables: _SpeechTables) -> np.ndarray:
    """Spectral envelopes of frames `part` [shape=(n, n_bins)].

    The formant product is a cascade formant synthesiser's transfer function, looked up in
    tables rather than computed.
    """
    steps = f.steps[part]
    env = tables.formants[0][steps[:, 0]]
    env *= tables.formants[1][steps[:, 1]]
    env *= tables.formants[2][steps[:, 2]]
    env *= cast.upper[f.voice[part]]
    env *= f.formant_gain[part, None]
    env += f.fric_gain[part, None] * tables.fricatives[f.fric_row[part]]
    return env


# Frames filtered at a time: the working set stays in cache (~0.5 MB per array).
_CHUNK_FRAMES = 512


def _filter(blocks: np.ndarray, f: _Frames, cast: _Cast, tables: _SpeechTables) -> np.ndarray:
    """Filter the excitation frame by frame: STFT, multiply by the envelope, overlap-add.

    Time-varying formant filters as batched FFTs instead of thousands of small IIR calls.
    `blocks` [shape=(n_blocks + 2, hop)] are blocks -1 .. n_blocks with the outer two silent;
    returns the same layout, the outer two holding the first and last frames' tails.
    """
    hop = tables.hop
    out = np.zeros_like(blocks)
    for lo in range(0, f.index.size, _CHUNK_FRAMES):
        part = slice(lo, lo + _CHUNK_FRAMES)
        j = f.index[part]
        frames = np.concatenate([blocks[j], blocks[j + 1]], axis=1)
        frames *= tables.window
        spectra = scipy.fft.rfft(frames, axis=1)
        spectra *= _envelopes(f, part, cast, tables)
        filtered = scipy.fft.irfft(spectra, n=2 * hop, axis=1)
        filtered *= tables.window
        out[j] += filtered[:, :hop]
        out[j + 1] += filtered[:, hop:]
    return out


def _line_gains(plan: _Dialogue, speech: np.ndarray) -> np.ndarray:
    """Gain per block [shape=(n_blocks + 2,)] that brings each line to its RMS.

    A block takes the gain of the line that last started, so the tail a line leaves in the
    pause after it is scaled with it.
    """
    energy = np.einsum("ij,ij->i", speech, speech, dtype=np.float64)
    energy = np.r_[energy[1:-1], 0.0]  # drop the tail blocks; reduceat needs an index past ends
    bounds = np.stack([plan.line_start, plan.line_stop], axis=1).ravel()
    line_energy = np.add.reduceat(energy, bounds)[::2]
    n_samples = (plan.line_stop - plan.line_start) * speech.shape[1]
    line_rms = np.sqrt(line_energy / np.maximum(n_samples, 1))
    gain = _SPEECH_RMS * plan.line_gain / np.maximum(line_rms, 1e-9)
    line = np.searchsorted(plan.line_start, np.arange(-1, speech.shape[0] - 1), side="right") - 1
    return gain[np.clip(line, 0, None)].astype(np.float32)


def _dialogue(n: int, cast: _Cast, rng: np.random.Generator, *, sr: int) -> np.ndarray:
    """A scene's dialogue track, float32 [shape=(<= n,)], lines at `_SPEECH_RMS` x loudness."""
    tables = _speech_tables(sr)
    hop = tables.hop
    n_blocks = n // hop
    if n_blocks < 64:
        return np.zeros(0, np.float32)  # too short for a line
    plan = _plan_dialogue(n_blocks, cast, rng, hop_s=hop / sr)
    if plan.line_start.size == 0:
        return np.zeros(0, np.float32)
    controls = _controls(plan.segments, cast, rng)
    sounding, excitation = _excitation(controls, cast, rng, sr=sr, hop=hop)
    blocks = np.zeros((n_blocks + 2, hop), np.float32)
    blocks[sounding + 1] = excitation
    speech = _filter(blocks, _frames(controls, tables), cast, tables)
    speech *= _line_gains(plan, speech)[:, None]
    return speech[1:-1].reshape(-1)


# ---------------------------------------------------------------------------------------------
# Music


@dataclass(frozen=True)
class _Instrument:
    """An additive instrument: partials with their own decay, an attack and a release."""

    name: str
    ratios: tuple[float, ...]  # partial frequencies relative to the fundamental
    amps: tuple[float, ...]
    attack_s: float
    decay_s: float  # time constant of the fundamental's decay; higher partials decay faster
    release_s: float
    brightness: float  # how much faster each higher partial decays
    detune_cents: float = 0.0  # a second, detuned oscillator: chorus beating (pads)


def _vary(inst: _Instrument, rng: np.random.Generator) -> _Instrument:
    """The same kind of instrument with its own timbre: each episode has its own sound."""
    amps = np.array(inst.amps) * rng.uniform(0.6, 1.4, len(inst.amps))
    return _Instrument(
        inst.name,
        inst.ratios,
        tuple(float(a) for a in amps),
        inst.attack_s,
        inst.decay_s * rng.uniform(0.75, 1.3),
        inst.release_s,
        inst.brightness,
        inst.detune_cents,
    )


_PAD = _Instrument(
    "pad", (1, 2, 3, 4, 5, 6), (1, 0.45, 0.3, 0.18, 0.1, 0.06), 0.25, 30.0, 0.4, 0.0, 7.0
)
_KEYS = _Instrument("keys", (1, 2, 3, 4, 5), (1, 0.6, 0.25, 0.15, 0.08), 0.004, 0.7, 0.12, 1.5)
_BASS = _Instrument("bass", (1, 2, 3, 4), (1, 0.5, 0.35, 0.15), 0.01, 0.9, 0.08, 0.8)
_LEAD = _Instrument(
    "lead", tuple(range(1, 11)), tuple(1 / k for k in range(1, 11)), 0.03, 2.0, 0.1, 0.3
)
_BELL = _Instrument(
    "bell", (1, 2.0, 3.0, 4.16, 5.43), (1, 0.5, 0.4, 0.25, 0.2), 0.002, 1.2, 0.3, 1.0
)


def _midi_hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _render_note(
    inst: _Instrument, freq_hz: float, hold_s: float, rng: np.random.Generator, *, sr: int
) -> np.ndarray:
    """One note: held for `hold_s`, then released, float32."""
    n_hold = max(1, round(hold_s * sr))
    n = n_hold + round(inst.release_s * sr)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    ratios = np.array(inst.ratios, dtype=np.float32)
    amps = np.array(inst.amps, dtype=np.float32)
    detunes = [1.0, 2 ** (inst.detune_cents / 1200)] if inst.detune_cents else [1.0]
    keep = ratios * freq_hz * max(detunes) < 0.45 * sr
    ratios, amps = ratios[keep, None], amps[keep, None]
    rates = (1 + inst.brightness * (ratios - 1)) / np.float32(inst.decay_s)
    # Without brightness every partial decays alike: one envelope instead of one per partial.
    decay = np.exp(-t * rates) if inst.brightness else np.exp(-t * rates[:1])
    tone = np.zeros(n, np.float32)
    for detune in detunes:
        phase = np.float32(2 * np.pi * freq_hz * detune) * ratios * t
        phase += rng.uniform(0, 2 * np.pi, (ratios.size, 1)).astype(np.float32)
        tone += (amps * decay * np.sin(phase)).sum(axis=0)
    env = np.minimum(1.0, t / np.float32(inst.attack_s))
    release = np.clip(1 - (t - np.float32(n_hold / sr)) / np.float32(inst.release_s), 0, 1)
    return (tone * env * release / len(detunes)).astype(np.float32)


_DRUM_NAMES = ("kick", "snare", "hat", "crash")


def _drum_kit(rng: np.random.Generator, *, sr: int) -> dict[str, np.ndarray]:
    """Kick (a falling sine thump), snare (noise and a tone), hi-hat and crash (bright noise)."""

    def t(duration_s: float) -> np.ndarray:
        return np.arange(round(duration_s * sr), dtype=np.float32) / np.float32(sr)

    def bright(n: int) -> np.ndarray:
        return np.diff(_white(n + 1, rng))  # differencing tilts white noise towards the top

    tk, ts, th, tc = t(0.3), t(0.22), t(0.07), t(1.4)
    kick_hz = 45 + 95 * np.exp(-tk / 0.035)
    kick = np.sin(2 * np.pi * np.cumsum(kick_hz) / sr) * np.exp(-tk / 0.11)
    kick += 0.3 * _white(tk.size, rng) * np.exp(-tk / 0.003)
    snare_hz = rng.uniform(170, 220)
    snare = 0.6 * bright(ts.size) * np.exp(-ts / 0.06)
    snare += 0.5 * np.sin(2 * np.pi * snare_hz * ts) * np.exp(-ts / 0.05)
    hat = bright(th.size) * np.exp(-th / 0.015)
    crash = bright(tc.size) * np.exp(-tc / 0.4) * np.minimum(1, tc / 0.002)
    return {
        name: x.astype(np.float32)
        for name, x in zip(_DRUM_NAMES, (kick, snare, hat, crash), strict=True)
    }


_SCALES = (
    np.array([0, 2, 4, 5, 7, 9, 11]),  # major
    np.array([0, 2, 3, 5, 7, 8, 10]),  # natural minor
    np.array([0, 2, 3, 5, 7, 9, 10]),  # dorian
    np.array([0, 2, 4, 5, 7, 9, 10]),  # mixolydian
)


class _Palette:
    """An episode's (or the theme's) instruments and drum kit, with a cache of rendered notes.

    Notes recur constantly in music; rendering each (instrument, pitch, length) once keeps a
    20-minute episode's music to a few milliseconds of synthesis per scene.
    """

    def __init__(
        self, rng: np.random.Generator, *, sr: int, bpm: tuple[float, float] = (70.0, 130.0)
    ) -> None:
        self.sr = sr
        self.rng = rng
        self.pad, self.keys, self.bass = _vary(_PAD, rng), _vary(_KEYS, rng), _vary(_BASS, rng)
        self.lead, self.bell = _vary(_LEAD, rng), _vary(_BELL, rng)
        self.kit = _drum_kit(rng, sr=sr)
        # A score keeps to a couple of keys and tempos, which is also what lets notes be reused.
        self.tonalities = [
            (int(rng.integers(45, 57)), _SCALES[int(rng.integers(len(_SCALES)))]) for _ in range(2)
        ]
        self.beats = [round(60 / rng.uniform(*bpm) * sr) for _ in range(2)]
        self._notes: dict[tuple[str, int, int], np.ndarray] = {}

    def note(self, inst: _Instrument, midi: int, hold_samples: int) -> np.ndarray:
        key = (inst.name, midi, hold_samples)
        if key not in self._notes:
            self._notes[key] = _render_note(
                inst, _midi_hz(midi), hold_samples / self.sr, self.rng, sr=self.sr
            )
        return self._notes[key]


_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (1, 4, 0, 0), (0, 3, 0, 4), (0, 6, 5, 4))
# 16-step drum patterns: kick, snare, hi-hat velocities.
_GROOVES = (
    ("x.......x.......", "....x.......x...", "x.x.x.x.x.x.x.x."),
    ("x.....x...x.....", "....x.......x...", "xxxxxxxxxxxxxxxx"),
    ("x.......x..x....", "....x.......x..x", "..x...x...x...x."),
    ("x...x...x...x...", "................", "..x...x...x...x."),
)


@dataclass(frozen=True)
class _Style:
    beat: int  # samples per beat; an integer so that looped bars stay aligned
    root_midi: int
    scale: np.ndarray
    progression: tuple[int, ...]
    chords: str  # "pad", "arp" or "stabs"
    groove: tuple[str, str, str] | None
    melody_density: float


def _random_style(rng: np.random.Generator, palette: _Palette, *, drums_p: float) -> _Style:
    groove = _GROOVES[int(rng.integers(len(_GROOVES)))] if rng.random() < drums_p else None
    root, scale = palette.tonalities[int(rng.integers(len(palette.tonalities)))]
    return _Style(
        beat=palette.beats[int(rng.integers(len(palette.beats)))],
        root_midi=root,
        scale=scale,
        progression=_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))],
        chords=str(rng.choice(["pad", "arp", "stabs"])),
        groove=groove,
        melody_density=float(rng.uniform(0.25, 0.6)),
    )


def _degree_midi(style: _Style, degree: int, octave: int = 0) -> int:
    octave += degree // 7
    return int(style.root_midi + 12 * octave + style.scale[degree % 7])


_Event = tuple[int, _Instrument, int, int, float]  # start, instrument, midi, hold, gain


def _chord_events(style: _Style, palette: _Palette, degree: int, start: int) -> list[_Event]:
    beat = style.beat
    tones = [_degree_midi(style, degree + k, 1) for k in (0, 2, 4)]
    if style.chords == "pad":
        return [(start, palette.pad, m, 4 * beat, 0.22) for m in tones]
    if style.chords == "arp":
        cycle = [*tones, tones[0] + 12]
        return [(start + i * beat // 2, palette.keys, cycle[i % 4], beat, 0.3) for i in range(8)]
    stabs = (0, 3 * beat // 2, 3 * beat)
    return [(start + s, palette.keys, m, beat // 2, 0.25) for s in stabs for m in tones]


def _bass_events(style: _Style, palette: _Palette, degree: int, start: int) -> list[_Event]:
    root = _degree_midi(style, degree, -1)
    beat = style.beat
    if style.groove is None:
        return [(start, palette.bass, root, 4 * beat, 0.45)]
    return [
        (start, palette.bass, root, 2 * beat, 0.45),
        (start + 5 * beat // 2, palette.bass, root, beat, 0.4),
        (start + 3 * beat, palette.bass, root + 7 if root + 7 < 60 else root, beat, 0.4),
    ]


def _melody_events(
    style: _Style,
    palette: _Palette,
    degrees: list[int],
    start: int,
    rng: np.random.Generator,
    inst: _Instrument,
) -> list[_Event]:
    """A random walk over the scale near the chords, on an eighth-note grid."""
    half = style.beat // 2
    events: list[_Event] = []
    step = int(rng.integers(0, 5))
    for bar, degree in enumerate(degrees):
        on = np.flatnonzero(rng.random(8) < style.melody_density)
        for i, slot in enumerate(on):
            step = int(np.clip(step + rng.integers(-2, 3), -2, 9))
            pitch = degree + 2 * int(rng.integers(0, 3)) if slot % 4 == 0 else degree + step
            length = (on[i + 1] - slot) if i + 1 < on.size else 8 - slot
            events.append(
                (
                    start + (bar * 8 + int(slot)) * half,
                    inst,
                    _degree_midi(style, pitch, 2),
                    int(length) * half,
                    0.3,
                )
            )
    return events


def _shift(events: list[_Event], offset: int) -> list[_Event]:
    return [(start + offset, inst, midi, hold, gain) for start, inst, midi, hold, gain in events]


def _drum_hits(style: _Style, start: int, n_bars: int) -> list[tuple[int, str, float]]:
    if style.groove is None:
        return []
    sixteenth = style.beat / 4
    hits = []
    for bar in range(n_bars):
        for name, pattern, gain in zip(
            ("kick", "snare", "hat"), style.groove, (0.7, 0.45, 0.15), strict=True
        ):
            hits += [
                (start + round((bar * 16 + i) * sixteenth), name, gain)
                for i, c in enumerate(pattern)
                if c == "x"
            ]
    return hits


def _render(
    n: int, notes: list[_Event], hits: list[tuple[int, str, float]], palette: _Palette
) -> np.ndarray:
    """Render events into a buffer of `n` samples plus room for the last notes' tails."""
    buf = np.zeros(n + 2 * palette.sr, np.float32)
    for start, inst, midi, hold, gain in notes:
        _mix_in(buf, start, palette.note(inst, midi, hold), gain)
    for start, name, gain in hits:
        _mix_in(buf, start, palette.kit[name], gain)
    return buf


def _phrase(
    style: _Style, palette: _Palette, rng: np.random.Generator, *, melody: bool
) -> tuple[np.ndarray, int]:
    """One pass through the chord progression: (audio with tail, length without tail)."""
    bar = 4 * style.beat
    notes: list[_Event] = []
    for i, degree in enumerate(style.progression):
        notes += _chord_events(style, palette, degree, i * bar)
        notes += _bass_events(style, palette, degree, i * bar)
    if melody:
        inst = palette.bell if rng.random() < 0.5 else palette.lead
        notes += _melody_events(style, palette, list(style.progression), 0, rng, inst)
    n = bar * len(style.progression)
    return _render(n, notes, _drum_hits(style, 0, len(style.progression)), palette), n


def _music_bed(
    n: int, palette: _Palette, rng: np.random.Generator, *, drums_p: float
) -> np.ndarray:
    """Underscore for a scene, float32 [shape=(n,)], RMS ~1: two phrases looped in a form.

    Looping is what TV underscore does, and it makes music-only stretches repeat inside an
    episode: a fingerprinter must cope with that.
    """
    style = _random_style(rng, palette, drums_p=drums_p)
    a, length = _phrase(style, palette, rng, melody=rng.random() < 0.5)
    b, _ = _phrase(style, palette, rng, melody=True)
    form = (a, a, b, a) if rng.random() < 0.5 else (a, b)
    out = np.zeros(n + a.size, np.float32)
    gain = 1 / max(_rms(a[:length]), 1e-9)  # one phrase measures the level well enough
    for i, start in enumerate(range(0, n, length)):
        _mix_in(out, start, form[i % len(form)], gain)
    sr = palette.sr
    return _fade(out[:n], n_in=round(rng.uniform(0.3, 2.0) * sr), n_out=round(1.5 * sr))


def _stinger(palette: _Palette, rng: np.random.Generator) -> np.ndarray:
    """A transition: optional rising pickup, then a chord hit with kick and crash, float32."""
    sr = palette.sr
    style = _random_style(rng, palette, drums_p=0.0)
    degree = int(rng.choice([0, 3, 4, 5]))
    pickup = int(rng.integers(0, 6))
    # Lengths in beats of the palette's tempos, so that the note cache serves stingers too.
    step = style.beat // 4
    hit = pickup * step
    hold = style.beat * int(rng.integers(2, 5))
    notes: list[_Event] = [
        (i * step, palette.bell, _degree_midi(style, degree + 2 * i, 1), step, 0.3)
        for i in range(pickup)
    ]
    notes += [(hit, palette.pad, _degree_midi(style, degree + k, 1), hold, 0.25) for k in (0, 2, 4)]
    notes += [
        (hit, palette.keys, _degree_midi(style, degree + k, 2), hold, 0.25) for k in (0, 2, 4)
    ]
    notes.append((hit, palette.bass, _degree_midi(style, degree, -1), hold, 0.5))
    out = _render(hit + hold, notes, [(hit, "kick", 0.8), (hit, "crash", 0.35)], palette)
    end = hit + hold + round(0.6 * sr)
    return _fade(out[:end], n_in=0, n_out=round(0.3 * sr))


def _normalise_peak(y: np.ndarray, peak: float = _PEAK) -> np.ndarray:
    """Scale float32 `y` in place to the given peak (silence stays silent) and return it."""
    top = max(float(y.max()), -float(y.min())) if y.size else 0.0
    if top > 0:
        y *= np.float32(peak / top)
    return y


def make_intro(*, sr: int, seed: int) -> np.ndarray:
    """The show's theme: ~13-14 s of drums, bass, chords and a recurring melody.

    Returns float32 [shape=(n,)], peak 0.7. The same `seed` gives the same theme; pass it to
    every `make_episode` of a show, as every real episode opens with the same theme.
    """
    rng = _rng(seed, _TAG_INTRO)
    palette = _Palette(rng, sr=sr, bpm=(136.0, 150.0))
    style = _random_style(rng, palette, drums_p=1.0)
    style = _Style(
        style.beat,
        style.root_midi,
        _SCALES[int(rng.choice([0, 3]))],
        style.progression,
        "stabs",
        style.groove,
        0.6,
    )
    bar = 4 * style.beat
    degrees = list(style.progression) * 2
    notes: list[_Event] = []
    for i, degree in enumerate(degrees[:7]):
        notes += _chord_events(style, palette, degree, i * bar)
        notes += _bass_events(style, palette, degree, i * bar)
    # A two-bar motif, an answer, the motif again, the answer's opening: a recognisable tune.
    motif = _melody_events(style, palette, degrees[:2], 0, rng, palette.lead)
    answer = _melody_events(style, palette, degrees[2:4], 2 * bar, rng, palette.lead)
    notes += motif + answer + _shift(motif, 4 * bar) + [e for e in answer if e[0] < 3 * bar]
    notes += [(7 * bar, palette.pad, _degree_midi(style, k, 1), bar, 0.3) for k in (0, 2, 4)]
    notes += [
        (7 * bar, palette.bass, _degree_midi(style, 0, -1), bar, 0.6),
        (7 * bar, palette.lead, _degree_midi(style, 7, 1), bar, 0.3),
    ]
    hits = [*_drum_hits(style, 0, 7), (7 * bar, "kick", 0.8), (7 * bar, "crash", 0.4)]
    out = _render(8 * bar, notes, hits, palette)[: 8 * bar]
    return _normalise_peak(_fade(out, n_in=0, n_out=round(0.4 * sr)))


def make_cues(*, sr: int, seed: int, n_cues: int = 3) -> list[np.ndarray]:
    """Short stingers (1-3 s) a show reuses across episodes, float32, peak 0.7 each."""
    rng = _rng(seed, _TAG_CUES)
    palette = _Palette(rng, sr=sr)
    return [_normalise_peak(_stinger(palette, rng)) for _ in range(n_cues)]


# ---------------------------------------------------------------------------------------------
# Episodes


def _room_tone(n: int, rng: np.random.Generator, *, rms: float) -> np.ndarray:
    """Background hiss and rumble, float32 [shape=(n,)], at about the given RMS.

    Noise held for 2 and 32 samples (most energy low, a little hiss) stands in for a filter
    pass over the whole scene, which would cost more than the rest of the scene.
    """
    hiss, rumble = 0.3, 1.0
    out = np.repeat(_white(n // 2 + 1, rng) * np.float32(hiss), 2)[:n]
    out += np.repeat(_white(n // 32 + 1, rng) * np.float32(rumble), 32)[:n]
    out *= np.float32(rms / math.hypot(hiss, rumble))
    return out


def _scene(
    out: np.ndarray, kind: str, cast: _Cast, palette: _Palette, rng: np.random.Generator
) -> None:
    """Add one scene to `out`: dialogue, dialogue over a bed, or a music montage."""
    n = out.size
    out += _room_tone(n, rng, rms=_SPEECH_RMS * 10 ** (rng.uniform(-48, -36) / 20))
    if kind != "montage":
        speech = _dialogue(n, cast, rng, sr=palette.sr)
        out[: speech.size] += speech
    if kind != "dialogue":
        bed = _music_bed(n, palette, rng, drums_p=0.8 if kind == "montage" else 0.3)
        level_db = rng.uniform(-5, -1) if kind == "montage" else rng.uniform(-22, -13)
        bed *= np.float32(_SPEECH_RMS * 10 ** (level_db / 20))
        out += bed


def _scene_plan(rng: np.random.Generator) -> tuple[str, float]:
    kind = str(rng.choice(["dialogue_bed", "dialogue", "montage"], p=[0.5, 0.35, 0.15]))
    duration_s = rng.uniform(8, 20) if kind == "montage" else rng.uniform(15, 75)
    return kind, duration_s


def _body(
    out: np.ndarray,
    cast: _Cast,
    rng: np.random.Generator,
    shared_cues: list[np.ndarray],
    *,
    sr: int,
) -> None:
    """Fill `out` (zeros) with scenes and stingers; the first stinger is a shared cue if any."""
    palette = _Palette(rng, sr=sr)
    n = out.size
    pos = 0
    first = True
    while pos < n:
        kind, duration_s = _scene_plan(rng)
        length = min(round(duration_s * sr), n - pos)
        _scene(out[pos : pos + length], kind, cast, palette, rng)
        pos += length
        if pos >= n:
            break
        use_cue = bool(shared_cues) and (first or rng.random() < 0.3)
        if not use_cue and rng.random() < 0.15:
            continue  # a hard cut
        cue = (
            shared_cues[int(rng.integers(len(shared_cues)))] if use_cue else _stinger(palette, rng)
        )
        level_db = rng.uniform(-3, 1)
        _mix_in(out, pos, cue, _SPEECH_RMS * 10 ** (level_db / 20) / max(_rms(cue), 1e-9))
        pos += max(1, cue.size - round(0.3 * sr))  # the next scene starts under the cue's tail
        first = False


def make_episode(
    *,
    sr: int,
    duration_s: float,
    seed: int,
    intro: np.ndarray | None = None,
    shared_cues: list[np.ndarray] | None = None,
    cast_seed: int = 0,
) -> np.ndarray:
    """A TV-episode-like soundtrack, float32 [shape=(round(duration_s * sr),)], peak 0.7.

    `intro` (if given) opens the episode sample for sample; then come scenes of dialogue (with or
    without a quiet music bed) and music montages, separated by stingers. When `shared_cues` are
    given, the first stinger and some later ones are taken from them (scaled to the mix).
    `cast_seed` picks the show's characters: episodes of one show share it, so the same voices
    recur as they do in a real series. Everything else comes from `seed`.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    n = round(duration_s * sr)
    out = np.zeros(n, np.float32)
    head = 0
    if intro is not None:
        head = min(n, len(intro))
        out[:head] = np.asarray(intro, np.float32)[:head]
    if head < n:
        rng = _rng(seed, _TAG_EPISODE)
        cast = _make_cast(_rng(cast_seed, _TAG_CAST), sr=sr)
        _body(out[head:], cast, rng, list(shared_cues or []), sr=sr)
        _normalise_peak(out[head:])
    return out


def episode_seed(*, seed: int, index: int) -> int:
    """The seed `make_catalogue(seed=seed)` gives its episode number `index` (from 0)."""
    return int(np.random.SeedSequence([_TAG_CATALOGUE, seed % 2**63, index]).generate_state(1)[0])


def make_catalogue(*, sr: int, n_episodes: int, duration_s: float, seed: int) -> list[np.ndarray]:
    """`n_episodes` episodes of one show: a common intro, shared cues and the same characters."""
    intro = make_intro(sr=sr, seed=seed)
    cues = make_cues(sr=sr, seed=seed)
    return [
        make_episode(
            sr=sr,
            duration_s=duration_s,
            seed=episode_seed(seed=seed, index=i),
            intro=intro,
            shared_cues=cues,
            cast_seed=seed,
        )
        for i in range(n_episodes)
    ]


# ---------------------------------------------------------------------------------------------
# Degradations


def add_noise(y: np.ndarray, *, snr_db: float, rng: np.random.Generator | int) -> np.ndarray:
    """`y` plus white Gaussian noise at `snr_db` (signal power over noise power), float32."""
    y = np.asarray(y, np.float32)
    noise = _as_rng(rng).standard_normal(y.size, dtype=np.float32)
    scale = math.sqrt(_rms(y) ** 2 / (max(_rms(noise), 1e-12) ** 2 * 10 ** (snr_db / 10)))
    return y + np.float32(scale) * noise


def mix(y: np.ndarray, other: np.ndarray, *, snr_db: float) -> np.ndarray:
    """`y` with `other` (e.g. music) on top at `snr_db` below it, float32 [shape=y.shape].

    `other` is looped or cut to the length of `y`.
    """
    y = np.asarray(y, np.float32)
    other = np.resize(np.asarray(other, np.float32), y.size)
    scale = _rms(y) / max(_rms(other), 1e-12) / 10 ** (snr_db / 20)
    return y + np.float32(scale) * other


def change_speed(y: np.ndarray, *, factor: float) -> np.ndarray:
    """Play `y` `factor` times faster, tempo and pitch together (a resample), float32.

    1.25 is 25% faster: the output is 1/1.25 as long and every frequency 1.25 times higher. The
    ratio is approximated by a fraction with denominator at most 1000 (error < 1e-6).
    """
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}")
    ratio = Fraction(1 / factor).limit_denominator(1000)
    out = signal.resample_poly(np.asarray(y, np.float32), ratio.numerator, ratio.denominator)
    return out.astype(np.float32)


def band_limit(y: np.ndarray, *, sr: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Keep `low_hz`..`high_hz` (4th-order Butterworth, causal like a real channel), float32.

    `low_hz <= 0` means no high-pass; `high_hz >= sr / 2` means no low-pass.
    """
    nyquist = sr / 2
    if low_hz > 0 and high_hz < nyquist:
        sos = signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=sr, output="sos")
    elif low_hz > 0:
        sos = signal.butter(4, low_hz, btype="highpass", fs=sr, output="sos")
    elif high_hz < nyquist:
        sos = signal.butter(4, high_hz, btype="lowpass", fs=sr, output="sos")
    else:
        return np.array(y, np.float32)
    return signal.sosfilt(sos, np.asarray(y, np.float32)).astype(np.float32)


def reverb(y: np.ndarray, *, sr: int, rt60_s: float, rng: np.random.Generator | int) -> np.ndarray:
    """`y` in a room: convolved with exponentially decaying noise (60 dB down at `rt60_s`).

    The direct sound is kept at equal energy with the reverberation; the output has the RMS of
    the input, float32 [shape=y.shape].
    """
    y = np.asarray(y, np.float32)
    n_ir = max(2, round(rt60_s * sr))
    t = np.arange(n_ir) / sr
    tail = _as_rng(rng).standard_normal(n_ir) * np.exp(-6.908 * t / rt60_s)
    tail[: round(0.005 * sr) + 1] = 0  # first reflections arrive a few ms after the direct sound
    ir = tail / max(np.sqrt(np.sum(tail**2)), 1e-12)
    ir[0] = 1.0
    wet = signal.fftconvolve(y, ir.astype(np.float32))[: y.size]
    return (wet * np.float32(_rms(y) / max(_rms(wet), 1e-12))).astype(np.float32)


def phone_recording(y: np.ndarray, *, sr: int, rng: np.random.Generator | int) -> np.ndarray:
    """What a phone held up to a TV records: room reverb, noise, a 300-3400 Hz channel, clipping.

    Float32 [shape=y.shape], peak at most 0.9.
    """
    rng = _as_rng(rng)
    out = reverb(y, sr=sr, rt60_s=float(rng.uniform(0.25, 0.5)), rng=rng)
    out = add_noise(out, snr_db=15.0, rng=rng)
    out = band_limit(out, sr=sr, low_hz=300.0, high_hz=min(3400.0, 0.45 * sr))
    # Automatic gain control drives the loudest moments into the converter's limit.
    level = float(np.percentile(np.abs(out), 99.7)) if out.size else 0.0
    if level > 0:
        out = out * np.float32(0.9 / level)
    return np.clip(out, -0.9, 0.9).astype(np.float32)


def write_wav(path: str | os.PathLike[str], y: np.ndarray, *, sr: int) -> None:
    """Write mono 16-bit PCM; samples outside [-1, 1] are clipped."""
    pcm = np.clip(np.rint(np.asarray(y, np.float64) * 32767), -32768, 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes(pcm.tobytes())
