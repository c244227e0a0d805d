"""Degradations that turn an excerpt into a realistic query: noise, music on top, a speed change,
a band limit, room reverb, a phone held up to a TV. Float32 in, float32 out; seeded.

Re-encoding with a codec is in `bot.synth.encode`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import signal

from bot.synth.common import as_rng, rms_of


def add_noise(y: np.ndarray, *, snr_db: float, rng: np.random.Generator | int) -> np.ndarray:
    """`y` plus white Gaussian noise at `snr_db` (signal power over noise power), float32."""
    y = np.asarray(y, np.float32)
    noise = as_rng(rng).standard_normal(y.size, dtype=np.float32)
    scale = math.sqrt(rms_of(y) ** 2 / (max(rms_of(noise), 1e-12) ** 2 * 10 ** (snr_db / 10)))
    return y + np.float32(scale) * noise


def mix(y: np.ndarray, other: np.ndarray, *, snr_db: float) -> np.ndarray:
    """`y` with `other` (e.g. music) on top at `snr_db` below it, float32 [shape=y.shape].

    `other` is looped or cut to the length of `y`.
    """
    y = np.asarray(y, np.float32)
    other = np.resize(np.asarray(other, np.float32), y.size)
    scale = rms_of(y) / max(rms_of(other), 1e-12) / 10 ** (snr_db / 20)
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
    tail = as_rng(rng).standard_normal(n_ir) * np.exp(-6.908 * t / rt60_s)
    tail[: round(0.005 * sr) + 1] = 0  # first reflections arrive a few ms after the direct sound
    ir = tail / max(np.sqrt(np.sum(tail**2)), 1e-12)
    ir[0] = 1.0
    wet = signal.fftconvolve(y, ir.astype(np.float32))[: y.size]
    return (wet * np.float32(rms_of(y) / max(rms_of(wet), 1e-12))).astype(np.float32)


def phone_recording(y: np.ndarray, *, sr: int, rng: np.random.Generator | int) -> np.ndarray:
    """What a phone held up to a TV records: room reverb, noise, a 300-3400 Hz channel, clipping.

    Float32 [shape=y.shape], peak at most 0.9.
    """
    rng = as_rng(rng)
    out = reverb(y, sr=sr, rt60_s=float(rng.uniform(0.25, 0.5)), rng=rng)
    out = add_noise(out, snr_db=15.0, rng=rng)
    out = band_limit(out, sr=sr, low_hz=300.0, high_hz=min(3400.0, 0.45 * sr))
    # Automatic gain control drives the loudest moments into the converter's limit.
    level = float(np.percentile(np.abs(out), 99.7)) if out.size else 0.0
    if level > 0:
        out = out * np.float32(0.9 / level)
    return np.clip(out, -0.9, 0.9).astype(np.float32)
