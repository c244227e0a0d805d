"""Query sets for the accuracy bench: clips cut from the generated corpus, then degraded.

A query is what a user would send: a few seconds of an episode, re-encoded, with music on top,
sped up, re-pitched, filmed off a TV with a phone, or cut together with other scenes; or a clip
of another show, or of the intro every episode shares. Each comes with the truth it is scored
against. Clips are cut from the episode files themselves (decoded from their AAC track), so
"clean" is an exact copy and every other set adds one degradation to it.

Sets are planned first (which episode, where, which factor: all seeded) and then made, one
episode decode at a time. The same corpus and seed always give the same queries.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from bench.corpus import Corpus, EpisodeInfo
from bench.corpus_sources import OVERLAY_TRACKS, SR, read_audio, recording
from bot.synth.degrade import change_speed, mix, phone_recording
from bot.synth.encode import codec_roundtrip

CLIP_LENGTHS_S = (3.0, 5.0, 10.0)
PAL_SPEED = 25.0 / 23.976

# name → one-line description; the order is the report's.
SETS: dict[str, str] = {
    "clean": "excerpt as is",
    "aac-32k": "re-encoded AAC-LC 32 kbps",
    "opus-16k": "re-encoded Opus 16 kbps",
    "music-10dB": "held-out music on top, 10 dB below",
    "music-5dB": "held-out music on top, 5 dB below",
    "music-0dB": "held-out music on top, same level",
    "speed": "resampled 0.8-1.5x (tempo and pitch together)",
    "tempo": "tempo only 0.85-1.25x (librosa time_stretch)",
    "pitch": "pitch only +-3 semitones (librosa pitch_shift)",
    "pal": "PAL speed-up 25/23.976 (resampled)",
    "phone": "phone re-recording: reverb, noise, 300-3400 Hz, AGC clipping",
    "compilation": "3-4 scenes from different episodes; length is per scene",
    "absent": "another show, not in the catalogue",
    "intro": "inside the intro every episode shares",
}


@dataclass(frozen=True)
class Scene:
    """Truth for a stretch of a query: query seconds [start, stop) are `episode` from `ref_s`."""

    query_start_s: float
    query_stop_s: float
    episode: str
    ref_s: float


@dataclass(frozen=True)
class Window:
    """Where a query's source audio comes from (a catalogue episode or a stranger)."""

    source: EpisodeInfo
    start_s: float
    duration_s: float


@dataclass
class Query:
    """One query and its truth.

    samples: float32 at corpus.SR [shape=(n,)].
    episode, ref_s: the episode and episode time at the query's start (None for absent/intro).
    speed: resample factor for speed/pal, tempo factor for tempo, else 1.0.
    """

    set: str
    length_s: float
    windows: list[Window]
    seed: int
    factor: float = 1.0
    episode: str | None = None
    ref_s: float | None = None
    scenes: list[Scene] = field(default_factory=list)
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def speed(self) -> float:
        return self.factor if self.set in {"speed", "pal", "tempo"} else 1.0


# ---------------------------------------------------------------------------------------------
# Degradations (all float32 at `sr` in, float32 out)


def time_stretch(y: np.ndarray, *, rate: float) -> np.ndarray:
    """Tempo changed by `rate` (1.2 = 20% faster), pitch kept (phase vocoder)."""
    import librosa

    return np.asarray(librosa.effects.time_stretch(y, rate=rate), np.float32)


def pitch_shift(y: np.ndarray, *, sr: int, n_steps: float) -> np.ndarray:
    """Pitch moved by `n_steps` semitones, tempo kept."""
    import librosa

    return np.asarray(librosa.effects.pitch_shift(y, sr=sr, n_steps=n_steps), np.float32)


def crossfade_concat(parts: Sequence[np.ndarray], *, sr: int, fade_s: float = 0.02) -> np.ndarray:
    """Parts joined end to end with short fades, as an editor's hard cut sounds."""
    n = round(fade_s * sr)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    faded = []
    for part in parts:
        p = np.array(part, np.float32)
        p[:n] *= ramp
        p[-n:] *= ramp[::-1]
        faded.append(p)
    return np.concatenate(faded)


def resample(y: np.ndarray, *, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling between integer rates, float32."""
    if sr_from == sr_to:
        return np.asarray(y, np.float32)
    g = math.gcd(sr_from, sr_to)
    return signal.resample_poly(y, sr_to // g, sr_from // g).astype(np.float32)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to exactly `n` samples."""
    if y.size >= n:
        return np.array(y[:n], np.float32)
    return np.concatenate([y, np.zeros(n - y.size, np.float32)]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Planning


def _pick_window(
    rng: np.random.Generator,
    sources: Sequence[EpisodeInfo],
    duration_s: float,
    *,
    max_shared: float = 0.25,
    avoid: set[str] | None = None,
) -> Window:
    """A window mostly of unique material (at most `max_shared` of it shared across episodes)."""
    for _ in range(1000):
        source = sources[int(rng.integers(len(sources)))]
        if avoid and source.code in avoid:
            continue
        start = float(rng.uniform(1.0, source.duration_s - duration_s - 1.0))
        if source.shared_overlap_s(start, start + duration_s) <= max_shared * duration_s:
            return Window(source, round(start, 3), duration_s)
    raise RuntimeError("no window of unique material found; is the corpus too small?")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def plan_queries(corpus: Corpus, *, clips: int, seed: int) -> list[Query]:
    """Every query of every set and clip length, without audio yet."""
    queries = []
    episodes = corpus.episodes
    for s, name in enumerate(SETS):
        for length_s in CLIP_LENGTHS_S:
            rng = np.random.default_rng([seed, s, round(length_s * 10)])
            for _ in range(clips):
                queries.append(_plan_one(name, length_s, rng, corpus, episodes))
    return queries


def _plan_one(
    name: str,
    length_s: float,
    rng: np.random.Generator,
    corpus: Corpus,
    episodes: Sequence[EpisodeInfo],
) -> Query:
    clip_seed = int(rng.integers(2**31))
    factor = 1.0
    if name == "speed":
        factor = _log_uniform(rng, 0.8, 1.5)
    elif name == "tempo":
        factor = _log_uniform(rng, 0.85, 1.25)
    elif name == "pitch":
        factor = float(rng.uniform(-3.0, 3.0))  # semitones
    elif name == "pal":
        factor = PAL_SPEED
    if name == "compilation":
        n_scenes = min(int(rng.choice([3, 4])), len(episodes))
        windows: list[Window] = []
        for _ in range(n_scenes):
            used = {w.source.code for w in windows}
            windows.append(_pick_window(rng, episodes, length_s, avoid=used))
        scenes = [
            Scene(i * length_s, (i + 1) * length_s, w.source.code, w.start_s)
            for i, w in enumerate(windows)
        ]
        return Query(name, length_s, windows, clip_seed, scenes=scenes)
    if name == "absent":
        window = _pick_window(rng, corpus.strangers, length_s, max_shared=0.0)
        return Query(name, length_s, [window], clip_seed)
    if name == "intro":
        source = episodes[int(rng.integers(len(episodes)))]
        assert source.intro is not None
        start = float(rng.uniform(source.intro.start_s, source.intro.stop_s - length_s))
        return Query(name, length_s, [Window(source, round(start, 3), length_s)], clip_seed)
    # Speed and tempo changes squeeze `factor` times more episode into the clip.
    source_s = length_s * (factor if name in {"speed", "tempo", "pal"} else 1.0)
    window = _pick_window(rng, episodes, source_s)
    return Query(
        name,
        length_s,
        [window],
        clip_seed,
        factor=factor,
        episode=window.source.code,
        ref_s=window.start_s,
    )


# ---------------------------------------------------------------------------------------------
# Making the audio


def _degrade(query: Query, parts: list[np.ndarray], music: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(query.seed)
    n = round(query.length_s * SR)
    name = query.set
    if name == "compilation":
        return crossfade_concat(parts, sr=SR)
    y = parts[0]
    steps: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "aac-32k": lambda y: codec_roundtrip(y, sr=SR, codec="aac", bitrate="32k"),
        "opus-16k": lambda y: codec_roundtrip(y, sr=SR, codec="libopus", bitrate="16k"),
        "speed": lambda y: change_speed(y, factor=query.factor),
        "pal": lambda y: change_speed(y, factor=query.factor),
        "tempo": lambda y: time_stretch(y, rate=query.factor),
        "pitch": lambda y: pitch_shift(y, sr=SR, n_steps=query.factor),
        "phone": lambda y: phone_recording(y, sr=SR, rng=rng),
    }
    if name.startswith("music-"):
        snr_db = float(name.removeprefix("music-").removesuffix("dB"))
        start = int(rng.integers(0, music.size - y.size))
        return mix(y, music[start : start + y.size], snr_db=snr_db)
    return _fit(steps.get(name, lambda y: y)(y), n)


def _overlay_music() -> np.ndarray:
    """All held-out overlay tracks end to end (none of them is in the catalogue)."""
    return np.concatenate([recording(path) for path in OVERLAY_TRACKS])


def make_queries(corpus: Corpus, queries: list[Query]) -> Iterator[Query]:
    """Fill in each query's samples, decoding every source file once. Yields in plan order."""
    by_source: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for qi, query in enumerate(queries):
        for wi, window in enumerate(query.windows):
            by_source[window.source.path].append((qi, wi))
    cut: dict[tuple[int, int], np.ndarray] = {}  # int16
    for path, uses in by_source.items():
        audio = read_audio(corpus.root / path)
        for qi, wi in uses:
            w = queries[qi].windows[wi]
            a = round(w.start_s * SR)
            # Held as 16-bit until used: a large profile cuts hours of clips up front.
            piece = audio[a : a + round(w.duration_s * SR)]
            cut[(qi, wi)] = np.rint(np.clip(piece, -1.0, 1.0) * 32767).astype(np.int16)
        del audio
    music = _overlay_music()
    for qi, query in enumerate(queries):
        parts = [cut.pop((qi, wi)) / np.float32(32767) for wi in range(len(query.windows))]
        query.samples = _degrade(query, parts, music)
        yield query


def describe_sets() -> str:
    """One line per set, for the report."""
    return "\n".join(f"- `{name}`: {text}" for name, text in SETS.items())
