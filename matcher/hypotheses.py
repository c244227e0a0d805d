"""Hypotheses: the ways a clip may map onto its episode, and the grids of them searched.

A hypothesis maps the clip onto its episode: times × `time_scale`, log bands − `band_shift`.
Three lines of the (time, frequency) plane are searched: speed (a resample: both together, the
diagonal), tempo only (time stretched, pitch kept) and pitch only (pitch shifted, time kept).
The coarse pass of `matcher.search` walks `hypothesis_grid` at `coarse_step_log2`; a seed's
fine check walks `fine_around` its own hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcher.params import FingerprintParams, SearchParams

# Semitones per octave, for the pitch line.
_SEMITONES = 12.0

FAMILY_SPEED, FAMILY_TEMPO, FAMILY_PITCH = 0, 1, 2


@dataclass(frozen=True)
class Hypotheses:
    """Mappings of the clip onto the episode [shape=(h,)] each.

    time_scale: clip frames × time_scale = episode frames (the clip's tempo factor).
    band_shift: log bands the clip sits above the episode.
    family: 0 speed (resample), 1 tempo only, 2 pitch only.
    """

    time_scale: np.ndarray
    band_shift: np.ndarray
    family: np.ndarray

    @property
    def size(self) -> int:
        return int(self.time_scale.size)

    def take(self, i: np.ndarray) -> Hypotheses:
        return Hypotheses(self.time_scale[i], self.band_shift[i], self.family[i])


def _line(lo_log2: float, hi_log2: float, step: float) -> np.ndarray:
    """Grid from lo to hi (log2 units) at `step` that contains 0 when lo <= 0 <= hi."""
    if hi_log2 - lo_log2 <= 1e-12:
        return np.zeros(1) if lo_log2 <= 0 <= hi_log2 else np.zeros(0)
    below = -np.arange(0.0, -lo_log2 + 1e-9, step)[::-1] if lo_log2 < 0 else np.zeros(0)
    above = np.arange(0.0, hi_log2 + 1e-9, step)
    return np.unique(np.concatenate([below, above]))


def hypothesis_grid(
    search: SearchParams, *, params: FingerprintParams, step_log2: float
) -> Hypotheses:
    """Every hypothesis of the three lines at `step_log2`; identity once, first."""
    bpo = params.bands_per_octave
    speed = _line(np.log2(search.min_speed), np.log2(search.max_speed), step_log2)
    tempo = _line(np.log2(search.min_tempo), np.log2(search.max_tempo), step_log2)
    pitch_octaves = search.max_pitch_semitones / _SEMITONES
    pitch = _line(-pitch_octaves, pitch_octaves, step_log2)
    speed = speed if speed.size else np.zeros(1)
    tempo, pitch = tempo[tempo != 0], pitch[pitch != 0]
    speed = np.r_[0.0, speed[speed != 0]]
    time_log2 = np.concatenate([speed, tempo, np.zeros(pitch.size)])
    band_log2 = np.concatenate([speed, np.zeros(tempo.size), pitch])
    family = np.concatenate(
        [
            np.full(speed.size, FAMILY_SPEED),
            np.full(tempo.size, FAMILY_TEMPO),
            np.full(pitch.size, FAMILY_PITCH),
        ]
    ).astype(np.int8)
    return Hypotheses(2.0**time_log2, bpo * band_log2, family)


def fine_around(hyps: Hypotheses, h: int, *, search: SearchParams, bpo: int) -> Hypotheses:
    """Hypotheses across one coarse step around hypothesis `h`, on its own line."""
    n = max(search.fine_per_coarse, 1)
    step = search.coarse_step_log2 / n
    k = (np.arange(n) - (n - 1) / 2.0) * step
    t_log2 = np.log2(hyps.time_scale[h])
    b_log2 = hyps.band_shift[h] / bpo
    family = int(hyps.family[h])
    if family == FAMILY_PITCH:
        t, b = np.full(n, t_log2), b_log2 + k
    elif family == FAMILY_TEMPO:
        t, b = t_log2 + k, np.full(n, b_log2)
    elif t_log2 == 0.0 and b_log2 == 0.0:
        # The identity is on every line: check all three directions around it.
        t = np.r_[k, k, np.zeros(n)]
        b = np.r_[k, np.zeros(n), k]
        return Hypotheses(2.0**t, bpo * b, np.zeros(t.size, np.int8))
    else:
        t, b = t_log2 + k, b_log2 + k
    return Hypotheses(2.0**t, bpo * b, np.full(n, family, np.int8))


def n_fine_hypotheses(search: SearchParams, *, params: FingerprintParams) -> int:
    """How many hypotheses the fine grid would hold over the whole searched space."""
    step = search.coarse_step_log2 / max(search.fine_per_coarse, 1)
    return hypothesis_grid(search, params=params, step_log2=step).size
