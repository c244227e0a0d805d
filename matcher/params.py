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
# 2: the manifest records repeated spans (`repeats`), found at build time.
INDEX_FORMAT_VERSION = 2
# Versions this code can still read. Version 1 has the same arrays and no `repeats`: it loads
# with none (clips of an intro are then `ambiguous` without saying "intro"); a rebuild adds them.
READABLE_FORMAT_VERSIONS = (1, 2)


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
    # Hypotheses. Speed (resample-style: tempo and pitch move together), as factors of the
    # clip's speed relative to the episode: 1.25 = sped up by 25%.
    min_speed: float = 0.75
    max_speed: float = 1.6
    # Tempo-only changes (time stretched, pitch kept) and pitch-only changes (pitch shifted,
    # time kept) are searched on their own lines of the (time, frequency) plane. min=max=1 and
    # 0 semitones switch a line off.
    min_tempo: float = 0.85
    max_tempo: float = 1.25
    max_pitch_semitones: float = 3.0
    # The tempo and pitch lines are searched only when the speed line finds nothing
    # significant (most clips are unchanged or resampled); True searches all lines at once.
    off_diagonal_always: bool = False
    # Coarse grid step, log2 units (1.4%, about half a log band). A hypothesis this far from the
    # truth still reproduces most keys (band error <= 0.24 band, dt error <= 0.7% of Δt).
    coarse_step_log2: float = 0.02
    # The fine grid puts this many hypotheses across one coarse step around each candidate.
    fine_per_coarse: int = 3
    # Coarse pass: only the strongest peaks, paired sparsely, and only keys whose posting lists
    # are short (the long ones cost the most and tell the least), voting per offset bin.
    coarse_peaks_per_s: float = 20.0
    coarse_fan_out: int = 6
    coarse_max_postings: int = 400
    # Budget of postings the coarse pass reads: the rarest keys are taken until it is spent.
    # On the 100-hour synthetic index (300 x 20 min, 18.1 M postings) 1.5 M and 1 M found the
    # same clips (clean, speed 0.8-1.5, music 0-5 dB, phone: 20/20 each); 1 M is cheaper.
    coarse_max_votes: int = 1_000_000
    coarse_bin_frames: int = 16
    # Offset bins per window kept from the coarse pass, and candidates verified in full.
    coarse_cells: int = 12
    verify_candidates: int = 6
    # Long clips are searched in windows of this length (compilations: one scene per window
    # or more); a clip up to 1.5 windows long is one window.
    window_s: float = 10.0
    # Clips longer than 1.5 of these (s) are searched in windows this long, one after another
    # (`matcher.windows`): memory stays that of one window and cost grows with the clip.
    long_window_s: float = 30.0
    # Votes are counted once per slot of this many query frames (64 ms): landmarks of one
    # sustained sound (a held vowel, a chord) vote together even by chance, and counting them
    # once keeps the votes closer to the independent draws the Poisson model assumes.
    vote_slot_frames: int = 4
    # A candidate's votes must fall in at least this many half-second slots of the clip: a
    # real match spreads over the clip, chance agreement between unrelated sounds comes in
    # bursts (null clips on the test catalogue had 10 votes inside 1.2 s).
    min_spread_slots: int = 4
    # Keys whose posting lists are longer than this carry little information and cost most.
    max_postings_per_key: int = 4000
    # A candidate is reported when chance would produce its votes with at most this
    # probability over every cell searched.
    match_false_alarm_p: float = 1e-3
    # Aligned votes below this are never a match, whatever the chance model says. 10 cost 3 s
    # clean clips 19/20 -> 14/20 on the 100-hour index and was not needed for null dialogue.
    min_votes: int = 8
    # Another episode within this fraction of the best one's votes makes the answer ambiguous.
    ambiguous_ratio: float = 0.7
    # Stages for the live reply: seconds of audio heard before each interim answer.
    stages_s: tuple[float, ...] = field(default_factory=_default_stages)
    # Stop early when the false-alarm probability falls below this.
    certain_false_alarm_p: float = 1e-12
    # Clips longer than this are heard to the end even after a certain answer: they may be
    # compilations, and only the whole clip gives their timeline. Shorter ones stop early.
    early_stop_max_clip_s: float = 15.0
    candidates: int = 5
