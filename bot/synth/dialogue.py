"""Planning dialogue: lines between two or three characters, as syllables and their segments
(closures, onsets, vowels, codas, pauses), with durations, intonation and formant targets.

Plans only: `bot.synth.speech` turns a plan into samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.synth.voices import Cast

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
_SIL, VOWEL, _NASAL, _ASPIR, _FRIC_S, _FRIC_SH, _FRIC_F, _BURST_P, _BURST_T, _BURST_K = range(10)
KIND_VOICED = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
KIND_NOISE = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], dtype=np.float32)
KIND_FORMANT_GAIN = np.array([0, 1, 0.3, 0.5, 0, 0, 0, 0, 0, 0], dtype=np.float32)
KIND_FRIC_GAIN = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=np.float32)
KIND_FRIC_ROW = np.array([0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
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


def _draw(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices drawn with probabilities `p` (rng.choice with p is slow for small arrays)."""
    cdf = np.cumsum(p)
    return np.searchsorted(cdf / cdf[-1], rng.random(n), side="right")


@dataclass(frozen=True)
class Segments:
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
class Dialogue:
    segments: Segments
    line_start: np.ndarray  # first block of each line
    line_stop: np.ndarray  # block after each line's last sound
    line_gain: np.ndarray  # each line's loudness (voice and delivery)


def plan_dialogue(n_blocks: int, cast: Cast, rng: np.random.Generator, *, hop_s: float) -> Dialogue:
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
    sil, vow = np.full(n, _SIL), np.full(n, VOWEL)
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
    segments = Segments(
        kind=np.r_[_SIL, kinds.ravel()[: 6 * m][keep], _SIL],
        blocks=np.r_[lead, flat[: 6 * m][keep], n_blocks - used],
        voice=np.r_[0, np.repeat(voice[:m], 6)[keep], 0],
        st=np.r_[0, np.repeat(st[:m], 6)[keep], 0],
        gain=np.r_[0, gain[:m].ravel()[keep], 0],
        f_on=np.concatenate([nan3, f_on[:m].reshape(-1, 3)[keep], nan3]),
        f_off=np.concatenate([nan3, f_off[:m].reshape(-1, 3)[keep], nan3]),
    )
    delivery = 10 ** (rng.normal(0, 1.5, n_lines) / 20)
    return Dialogue(
        segments,
        line_start=starts[first[:n_fit], 0],
        line_stop=starts[last[:n_fit], 5],
        line_gain=(cast.loudness[line_voice] * delivery)[:n_fit],
    )
