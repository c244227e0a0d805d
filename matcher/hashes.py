"""Peaks → landmarks (anchor/target peak pairs) → 32-bit hash keys.

A key packs (anchor band, Δband, Δt). Δband on the log-frequency axis does not change with the
speed of the clip; the anchor band shifts and Δt stretches. A query is therefore paired once and
hashed once per speed hypothesis by shifting bands and scaling Δt (`landmarks2hashes`).
Pure numpy; no Python loop per peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcher.params import FingerprintParams
from matcher.peaks import Peaks


@dataclass(frozen=True)
class Landmarks:
    """Pairs of peaks: indices into one `Peaks`, anchors earlier than targets.

    anchor, target: int32 [shape=(n,)].
    """

    anchor: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return int(self.anchor.size)


@dataclass(frozen=True)
class Hashes:
    """Hash keys and where their anchors are.

    key: uint32 [shape=(n,)] packed (band, Δband, Δt).
    anchor_frame: int32 [shape=(n,)] frame of the anchor peak in its own audio.
    """

    key: np.ndarray
    anchor_frame: np.ndarray

    def __len__(self) -> int:
        return int(self.key.size)


def peaks2landmarks(
    peaks: Peaks, *, fan_out: int, max_dt_frames: int, max_dband: float
) -> Landmarks:
    """Pair each peak with the first `fan_out` later peaks inside the target zone.

    The zone is 1 <= Δt <= max_dt_frames and |Δband| <= max_dband.
    """
    n = len(peaks)
    if n < 2:
        empty = np.zeros(0, dtype=np.int32)
        return Landmarks(empty, empty)
    # How many following peaks (in frame order) can lie within max_dt_frames of an anchor.
    reach = int(
        np.max(
            np.searchsorted(peaks.frame, peaks.frame + max_dt_frames, side="right") - np.arange(n)
        )
    )
    width = max(1, min(n - 1, reach))
    anchor = np.repeat(np.arange(n, dtype=np.int32)[:, None], width, axis=1)
    target = anchor + np.arange(1, width + 1, dtype=np.int32)[None, :]
    in_range = target < n
    target = np.minimum(target, n - 1)
    dt = peaks.frame[target] - peaks.frame[anchor]
    dband = peaks.band[target] - peaks.band[anchor]
    valid = in_range & (dt >= 1) & (dt <= max_dt_frames) & (np.abs(dband) <= max_dband)
    # Keep the first fan_out valid targets of each anchor.
    valid &= np.cumsum(valid, axis=1) <= fan_out
    return Landmarks(anchor[valid], target[valid])


def landmarks2hashes(
    peaks: Peaks,
    landmarks: Landmarks,
    *,
    params: FingerprintParams,
    time_scale: float = 1.0,
    band_shift: float = 0.0,
) -> Hashes:
    """Hash keys of the landmarks, as if the audio were `time_scale` times longer and
    `band_shift` bands lower (the mapping of a changed clip back onto its episode).

    Pairs that fall outside the key layout after the mapping are dropped.
    """
    frame_a = peaks.frame[landmarks.anchor]
    band_a = peaks.band[landmarks.anchor] - band_shift
    dband = peaks.band[landmarks.target] - peaks.band[landmarks.anchor]
    dt = (peaks.frame[landmarks.target] - frame_a) * time_scale
    return _pack(band_a, dband, dt, frame_a, params=params)


def landmarks2hashes_grid(
    peaks: Peaks,
    landmarks: Landmarks,
    *,
    params: FingerprintParams,
    time_scale: np.ndarray,
    band_shift: np.ndarray,
) -> tuple[Hashes, np.ndarray, np.ndarray]:
    """`landmarks2hashes` for many hypotheses at once (no loop over hypotheses).

    time_scale, band_shift: float [shape=(h,)], one mapping per hypothesis.
    Returns the hashes of every (hypothesis, landmark) that fits the key layout, with the
    hypothesis index and the landmark index of each, int64 [shape=(n,)].
    """
    time_scale = np.asarray(time_scale, dtype=np.float64)
    band_shift = np.asarray(band_shift, dtype=np.float64)
    frame_a = peaks.frame[landmarks.anchor]
    band_a = peaks.band[landmarks.anchor].astype(np.float64)
    dband = peaks.band[landmarks.target].astype(np.float64) - band_a
    dt = (peaks.frame[landmarks.target] - frame_a).astype(np.float64)
    n_h, n_l = time_scale.size, landmarks.anchor.size
    band = (band_a[None, :] - band_shift[:, None]).ravel()
    scaled_dt = (dt[None, :] * time_scale[:, None]).ravel()
    hashes, valid = _pack_valid(
        band, np.tile(dband, n_h), scaled_dt, np.tile(frame_a, n_h), params=params
    )
    flat = np.flatnonzero(valid)
    return hashes, flat // max(n_l, 1), flat % max(n_l, 1)


def _pack(
    band: np.ndarray,
    dband: np.ndarray,
    dt: np.ndarray,
    anchor_frame: np.ndarray,
    *,
    params: FingerprintParams,
) -> Hashes:
    return _pack_valid(band, dband, dt, anchor_frame, params=params)[0]


def _pack_valid(
    band: np.ndarray,
    dband: np.ndarray,
    dt: np.ndarray,
    anchor_frame: np.ndarray,
    *,
    params: FingerprintParams,
) -> tuple[Hashes, np.ndarray]:
    band_q = np.rint(band).astype(np.int64)
    dband_q = np.rint(dband).astype(np.int64) + (1 << (params.dband_bits - 1))
    dt_q = np.rint(dt).astype(np.int64)
    valid = (
        (band_q >= 0)
        & (band_q < (1 << params.band_bits))
        & (dband_q >= 0)
        & (dband_q < (1 << params.dband_bits))
        & (dt_q >= 1)
        & (dt_q <= params.max_dt_frames)
        & (dt_q < (1 << params.dt_bits))
    )
    key = (
        (band_q[valid] << (params.dband_bits + params.dt_bits))
        | (dband_q[valid] << params.dt_bits)
        | dt_q[valid]
    ).astype(np.uint32)
    return Hashes(key=key, anchor_frame=anchor_frame[valid].astype(np.int32)), valid


def peaks2hashes(peaks: Peaks, *, params: FingerprintParams) -> Hashes:
    """Reference hashes: sparse pairs at the index's fan-out, no speed mapping."""
    landmarks = peaks2landmarks(
        peaks,
        fan_out=params.ref_fan_out,
        max_dt_frames=params.max_dt_frames,
        max_dband=params.max_dband,
    )
    return landmarks2hashes(peaks, landmarks, params=params)
