"""What every part of the synthesiser shares: levels, seeded random streams, mixing.

Internal to `bot.synth`; nothing here knows about speech, music or episodes.
"""

from __future__ import annotations

import numpy as np

# Peak level of generated audio: headroom for mixing degradations on top without clipping.
_PEAK = 0.7
# Dialogue lines are normalised to this RMS before the final peak normalisation; every other
# level in an episode is set relative to it.
SPEECH_RMS = 0.1

# Stream tags: intro, cues, cast and episodes drawn from one integer seed must not share a random
# stream, or `make_intro(seed=1)` and `make_episode(seed=1)` would begin with the same choices.
TAG_INTRO, TAG_CUES, TAG_CAST, TAG_EPISODE, TAG_CATALOGUE = range(1, 6)


def tagged_rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng([tag, seed % 2**63])


def as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    # default_rng returns a Generator unchanged, so callers may pass either.
    return np.random.default_rng(rng)


def rms_of(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0


def mix_in(buf: np.ndarray, start: int, sound: np.ndarray, gain: float = 1.0) -> None:
    """Add `gain * sound` into `buf` at sample `start`, cropping whatever falls outside."""
    lo = max(start, 0)
    hi = min(start + sound.size, buf.size)
    if hi > lo:
        buf[lo:hi] += np.float32(gain) * sound[lo - start : hi - start]


def fade(y: np.ndarray, *, n_in: int, n_out: int) -> np.ndarray:
    n_in, n_out = min(n_in, y.size), min(n_out, y.size)
    if n_in:
        y[:n_in] *= np.linspace(0.0, 1.0, n_in, dtype=np.float32)
    if n_out:
        y[y.size - n_out :] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)
    return y


def white(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform white noise, RMS ~1, float32 [shape=(n,)].

    int8 draws are ~15x cheaper than Gaussian ones and just as white; the speech and the room
    tone need millions of noise samples per episode.
    """
    ints = rng.integers(-128, 128, size=n, dtype=np.int8)
    return np.multiply(ints, np.float32(1 / 73.9), dtype=np.float32)


def normalise_peak(y: np.ndarray, peak: float = _PEAK) -> np.ndarray:
    """Scale float32 `y` in place to the given peak (silence stays silent) and return it."""
    top = max(float(y.max()), -float(y.min())) if y.size else 0.0
    if top > 0:
        y *= np.float32(peak / top)
    return y
