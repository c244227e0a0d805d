"""Rendering planned dialogue: glottal pulses and noise, shaped frame by frame by gliding
formants (batched FFTs, no per-sample loops), each line brought to its loudness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from bot.synth.common import SPEECH_RMS
from bot.synth.dialogue import (
    KIND_FORMANT_GAIN,
    KIND_FRIC_GAIN,
    KIND_FRIC_ROW,
    KIND_NOISE,
    KIND_VOICED,
    VOWEL,
    Dialogue,
    Segments,
    plan_dialogue,
)
from bot.synth.voices import FORMANT_STEP_HZ, GLOTTAL_N, Cast, SpeechTables, speech_tables


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


def _formant_tracks(segs: Segments, starts: np.ndarray, n_blocks: int) -> np.ndarray:
    """Formant frequencies per block [shape=(n_blocks, 3)], gliding between segment targets."""
    vowel = segs.kind == VOWEL
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


def _controls(segs: Segments, cast: Cast, rng: np.random.Generator) -> _Controls:
    blocks = segs.blocks
    starts = np.cumsum(blocks) - blocks
    n_blocks = int(blocks.sum())
    kind = np.repeat(segs.kind, blocks)
    voice = np.repeat(segs.voice, blocks)
    position = np.arange(n_blocks) - np.repeat(starts, blocks)
    length = np.repeat(blocks, blocks)
    # Syllable loudness swells and fades over the vowel.
    shape = np.where(kind == VOWEL, np.sin(np.pi * (position + 0.5) / length) ** 0.6, 1.0)
    st = np.convolve(np.repeat(segs.st, blocks), np.ones(5) / 5, mode="same")
    st += rng.normal(0, 0.08, n_blocks)
    gain = np.repeat(segs.gain, blocks)
    return _Controls(
        kind=kind,
        voice=voice,
        f0_hz=cast.f0_hz[voice] * 2 ** (st / 12),
        voiced=KIND_VOICED[kind],
        noise=KIND_NOISE[kind] + (kind == VOWEL) * cast.breath[voice].astype(np.float32),
        formant_gain=(KIND_FORMANT_GAIN[kind] * gain * shape).astype(np.float32),
        fric_gain=(KIND_FRIC_GAIN[kind] * gain).astype(np.float32),
        formants_hz=_formant_tracks(segs, starts, n_blocks),
    )


def _excitation(
    c: _Controls, cast: Cast, rng: np.random.Generator, *, sr: int, hop: int
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
    index = (phase * np.float32(GLOTTAL_N)).astype(np.int32)
    index &= GLOTTAL_N - 1
    index += (c.voice[sounding] * GLOTTAL_N).astype(np.int32)[:, None]
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


def _frames(c: _Controls, tables: SpeechTables) -> _Frames:
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
        steps=np.clip(np.rint(formants / FORMANT_STEP_HZ), 1, n_steps - 1).astype(np.intp),
        voice=np.r_[c.voice, c.voice[-1:]][index],
        formant_gain=formant_gain[index],
        fric_gain=fric_gain[index],
        fric_row=KIND_FRIC_ROW[louder],
    )


def _envelopes(f: _Frames, part: slice, cast: Cast, tables: SpeechTables) -> np.ndarray:
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


def _filter(blocks: np.ndarray, f: _Frames, cast: Cast, tables: SpeechTables) -> np.ndarray:
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


def _line_gains(plan: Dialogue, speech: np.ndarray) -> np.ndarray:
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
    gain = SPEECH_RMS * plan.line_gain / np.maximum(line_rms, 1e-9)
    line = np.searchsorted(plan.line_start, np.arange(-1, speech.shape[0] - 1), side="right") - 1
    return gain[np.clip(line, 0, None)].astype(np.float32)


def render_dialogue(n: int, cast: Cast, rng: np.random.Generator, *, sr: int) -> np.ndarray:
    """A scene's dialogue track, float32 [shape=(<= n,)], lines at `SPEECH_RMS` x loudness."""
    tables = speech_tables(sr)
    hop = tables.hop
    n_blocks = n // hop
    if n_blocks < 64:
        return np.zeros(0, np.float32)  # too short for a line
    plan = plan_dialogue(n_blocks, cast, rng, hop_s=hop / sr)
    if plan.line_start.size == 0:
        return np.zeros(0, np.float32)
    controls = _controls(plan.segments, cast, rng)
    sounding, excitation = _excitation(controls, cast, rng, sr=sr, hop=hop)
    blocks = np.zeros((n_blocks + 2, hop), np.float32)
    blocks[sounding + 1] = excitation
    speech = _filter(blocks, _frames(controls, tables), cast, tables)
    speech *= _line_gains(plan, speech)[:, None]
    return speech[1:-1].reshape(-1)
