"""Music for a show: additive instruments and a drum kit, styles drawn per episode, looped
underscore beds, stingers, and the theme (`make_intro`) and shared cues (`make_cues`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.synth.common import (
    TAG_CUES,
    TAG_INTRO,
    fade,
    mix_in,
    normalise_peak,
    rms_of,
    tagged_rng,
    white,
)


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
        return np.diff(white(n + 1, rng))  # differencing tilts white noise towards the top

    tk, ts, th, tc = t(0.3), t(0.22), t(0.07), t(1.4)
    kick_hz = 45 + 95 * np.exp(-tk / 0.035)
    kick = np.sin(2 * np.pi * np.cumsum(kick_hz) / sr) * np.exp(-tk / 0.11)
    kick += 0.3 * white(tk.size, rng) * np.exp(-tk / 0.003)
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


class Palette:
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


def _random_style(rng: np.random.Generator, palette: Palette, *, drums_p: float) -> _Style:
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


def _chord_events(style: _Style, palette: Palette, degree: int, start: int) -> list[_Event]:
    beat = style.beat
    tones = [_degree_midi(style, degree + k, 1) for k in (0, 2, 4)]
    if style.chords == "pad":
        return [(start, palette.pad, m, 4 * beat, 0.22) for m in tones]
    if style.chords == "arp":
        cycle = [*tones, tones[0] + 12]
        return [(start + i * beat // 2, palette.keys, cycle[i % 4], beat, 0.3) for i in range(8)]
    stabs = (0, 3 * beat // 2, 3 * beat)
    return [(start + s, palette.keys, m, beat // 2, 0.25) for s in stabs for m in tones]


def _bass_events(style: _Style, palette: Palette, degree: int, start: int) -> list[_Event]:
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
    palette: Palette,
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
    n: int, notes: list[_Event], hits: list[tuple[int, str, float]], palette: Palette
) -> np.ndarray:
    """Render events into a buffer of `n` samples plus room for the last notes' tails."""
    buf = np.zeros(n + 2 * palette.sr, np.float32)
    for start, inst, midi, hold, gain in notes:
        mix_in(buf, start, palette.note(inst, midi, hold), gain)
    for start, name, gain in hits:
        mix_in(buf, start, palette.kit[name], gain)
    return buf


def _phrase(
    style: _Style, palette: Palette, rng: np.random.Generator, *, melody: bool
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


def music_bed(n: int, palette: Palette, rng: np.random.Generator, *, drums_p: float) -> np.ndarray:
    """Underscore for a scene, float32 [shape=(n,)], RMS ~1: two phrases looped in a form.

    Looping is what TV underscore does, and it makes music-only stretches repeat inside an
    episode: a fingerprinter must cope with that.
    """
    style = _random_style(rng, palette, drums_p=drums_p)
    a, length = _phrase(style, palette, rng, melody=rng.random() < 0.5)
    b, _ = _phrase(style, palette, rng, melody=True)
    form = (a, a, b, a) if rng.random() < 0.5 else (a, b)
    out = np.zeros(n + a.size, np.float32)
    gain = 1 / max(rms_of(a[:length]), 1e-9)  # one phrase measures the level well enough
    for i, start in enumerate(range(0, n, length)):
        mix_in(out, start, form[i % len(form)], gain)
    sr = palette.sr
    return fade(out[:n], n_in=round(rng.uniform(0.3, 2.0) * sr), n_out=round(1.5 * sr))


def stinger(palette: Palette, rng: np.random.Generator) -> np.ndarray:
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
    return fade(out[:end], n_in=0, n_out=round(0.3 * sr))


def make_intro(*, sr: int, seed: int) -> np.ndarray:
    """The show's theme: ~13-14 s of drums, bass, chords and a recurring melody.

    Returns float32 [shape=(n,)], peak 0.7. The same `seed` gives the same theme; pass it to
    every `make_episode` of a show, as every real episode opens with the same theme.
    """
    rng = tagged_rng(seed, TAG_INTRO)
    palette = Palette(rng, sr=sr, bpm=(136.0, 150.0))
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
    return normalise_peak(fade(out, n_in=0, n_out=round(0.4 * sr)))


def make_cues(*, sr: int, seed: int, n_cues: int = 3) -> list[np.ndarray]:
    """Short stingers (1-3 s) a show reuses across episodes, float32, peak 0.7 each."""
    rng = tagged_rng(seed, TAG_CUES)
    palette = Palette(rng, sr=sr)
    return [normalise_peak(stinger(palette, rng)) for _ in range(n_cues)]
