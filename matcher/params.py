"""Fingerprint and search parameters.

`FingerprintParams` decide what goes into an index: they are saved in the index manifest with a
digest and checked on load, because an index queried with other parameters silently finds
nothing. `SearchParams` only shape a query and can change without a rebuild.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

# Bump when the on-disk layout or the meaning of a saved array changes.
INDEX_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FingerprintParams:
    """What the reference fingerprints are made of. Times in frames of `hop_length` samples."""

    # 8 kHz keeps speech and most music structure (up to 4 kHz), survives phone band limits,
    # and decodes and transforms ~3x faster than 22.05 kHz.
    sr: int = 8000
    # 1024 samples (128 ms) resolve harmonics ~8 Hz apart, needed for a log-frequency axis
    # fine enough at 150 Hz; the hop (16 ms) keeps timestamps and Δt precise.
    n_fft: int = 1024
    hop_length: int = 128
    # Log-frequency bands: a speed or pitch change is a shift along this axis.
    fmin_hz: float = 150.0
    fmax_hz: float = 3800.0
    bands_per_octave: int = 24
    # Local-maximum neighbourhood: ±frames, ±bands.
    peak_radius_frames: int = 6
    peak_radius_bands: int = 6
    # Reference peaks are sparse (a small index); queries are denser (see SearchParams).
    ref_peaks_per_s: float = 14.0
    ref_fan_out: int = 4
    # Pairing zone: Δt in [1, max_dt_frames], |Δband| <= max_dband.
    max_dt_frames: int = 63
    max_dband: int = 31
    # Hash key layout (bits): anchor band, Δband, Δt. Sum is the CSR table's key space.
    band_bits: int = 7
    dband_bits: int = 6
    dt_bits: int = 6

    @property
    def key_bits(self) -> int:
        return self.band_bits + self.dband_bits + self.dt_bits

    @property
    def frame_s(self) -> float:
        """Seconds per frame."""
        return self.hop_length / self.sr

    @property
    def n_bands(self) -> int:
        import math

        return math.floor(self.bands_per_octave * math.log2(self.fmax_hz / self.fmin_hz)) + 1

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def digest(self) -> str:
        """Short stable digest of every field, saved with the index and compared on load."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FingerprintParams:
        return cls(**data)  # type: ignore[arg-type]


def _default_stages() -> tuple[float, ...]:
    return (3.0, 5.0, 10.0)


@dataclass(frozen=True)
class SearchParams:
    """How a query is fingerprinted and scored. Changing these needs no rebuild."""

    # Denser than the reference so that its sparse peaks and pairs are all present.
    query_peaks_per_s: float = 40.0
    query_fan_out: int = 16
    # Speed hypotheses (resample-style: tempo and pitch move together), as factors of the
    # clip's speed relative to the episode: 1.25 = sped up by 25%.
    min_speed: float = 1.0
    max_speed: float = 1.0
    # Step between hypotheses, in log2 units; ~0.6% keeps Δt and band rounding within a
    # quantum at the largest Δt.
    speed_step_log2: float = 0.009
    # Offset votes are counted in bins of this many frames (64 ms).
    offset_bin_frames: int = 4
    # Keys whose posting lists are longer than this carry little information and cost most.
    max_postings_per_key: int = 4000
    # A candidate is reported when chance would produce its votes with at most this
    # probability over every cell searched.
    match_false_alarm_p: float = 1e-3
    # Aligned votes below this are never a match, whatever the chance model says.
    min_votes: int = 8
    # Another episode within this fraction of the best one's votes makes the answer ambiguous.
    ambiguous_ratio: float = 0.7
    # Stages for the live reply: seconds of audio heard before each interim answer.
    stages_s: tuple[float, ...] = field(default_factory=_default_stages)
    # Stop early when the false-alarm probability falls below this.
    certain_false_alarm_p: float = 1e-12
    candidates: int = 5
