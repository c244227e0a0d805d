"""A TV show made at run time from real recordings in Debian packages, for the accuracy bench.

Every episode is built like a real one: an optional cold open, the same theme intro, scenes of
dialogue (espeak-ng voices reading fortune-file lines) over music beds cut from recorded game
scores, stingers and sound effects that recur across episodes, catchphrases, and the same outro.
Episodes are written as real media files, mp4 with a tiny black H.264 track and AAC audio, in a
folder laid out like people's libraries:

    bench/out/corpus-<profile>/CityWok Test Show/Season 01/CityWok Test Show - S01E03 - Title.mp4

A few "stranger" episodes, made the same way from held-out music and held-out lines, are never
indexed: clips cut from them must not match. Other held-out tracks are kept for music mixed on
top of queries. Which recordings play which role is fixed in bench/corpus_sources.py, so no
query music is ever in the catalogue.

Everything is drawn from seeded generators: the same profile always gives the same files. The
corpus is cached under bench/out/ (never committed) and rebuilt only when its recipe changes.
The recordings come from `make bench-accuracy-deps` (apt-get); this module never downloads.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal

from bench.corpus_sources import (
    BED_TRACKS,
    CAST,
    CUES,
    HELD_OUT_BEDS,
    OUTRO,
    SFX,
    SR,
    THEME,
    Voice,
    check_sources,
    line_pools,
    read_audio,
    recording,
    speak,
)
from bot.synth.encode import Video, encode

OUT = Path(__file__).parent / "out"
SHOW = "CityWok Test Show"
# Bump when the recipe changes, so cached corpora are rebuilt.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class Profile:
    """Size of a benchmark run.

    clips: queries per (set, clip length).
    """

    name: str
    seasons: int
    episodes_per_season: int
    episode_s: float
    strangers: int
    stranger_s: float
    clips: int
    seed: int = 2026

    @property
    def n_episodes(self) -> int:
        return self.seasons * self.episodes_per_season


PROFILES = {
    # A quick check that everything runs: well under a minute.
    "tiny": Profile("tiny", 1, 3, 240.0, 1, 120.0, 3),
    # The everyday bench: ~3 h of episodes, a few minutes on 2 cores.
    "default": Profile("default", 2, 5, 1200.0, 3, 300.0, 20),
    # For releases: ~14 h of episodes, 100 clips per cell.
    "large": Profile("large", 3, 13, 1320.0, 10, 600.0, 100),
}


@dataclass(frozen=True)
class Span:
    """Material in an episode that other episodes share. Seconds of episode time."""

    start_s: float
    stop_s: float
    kind: str  # intro, outro, cue, sfx, catchphrase


@dataclass(frozen=True)
class EpisodeInfo:
    """One generated episode file and where its shared material lies."""

    code: str  # S01E03, or X01 for strangers
    season: int
    number: int
    title: str
    path: str  # relative to the corpus folder
    duration_s: float
    intro: Span | None
    shared: tuple[Span, ...]

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> EpisodeInfo:
        d = dict(data)
        intro = d.pop("intro")
        shared = d.pop("shared")
        return cls(
            **d,  # type: ignore[arg-type]
            intro=Span(**intro) if isinstance(intro, dict) else None,
            shared=tuple(Span(**s) for s in shared),  # type: ignore[attr-defined]
        )

    def shared_overlap_s(self, start_s: float, stop_s: float) -> float:
        """Seconds of [start_s, stop_s) covered by shared material."""
        return sum(max(0.0, min(stop_s, s.stop_s) - max(start_s, s.start_s)) for s in self.shared)


@dataclass
class Corpus:
    """A generated catalogue (`episodes`, to index) and strangers (never indexed)."""

    root: Path
    profile: Profile
    episodes: list[EpisodeInfo] = field(default_factory=list)
    strangers: list[EpisodeInfo] = field(default_factory=list)
    # Seconds the first generation took (a cached corpus costs nothing to reuse).
    generated_s: float = 0.0

    @property
    def show_dir(self) -> Path:
        return self.root / SHOW

    def path(self, episode: EpisodeInfo) -> Path:
        return self.root / episode.path


# ---------------------------------------------------------------------------------------------
# Planning and rendering episodes


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0


def _fade(y: np.ndarray, fade_s: float) -> np.ndarray:
    n = min(round(fade_s * SR), y.size // 2)
    if n <= 0:
        return np.array(y, np.float32)
    out = np.array(y, np.float32)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def _at_rms(y: np.ndarray, rms: float) -> np.ndarray:
    return (y * np.float32(rms / max(_rms(y), 1e-9))).astype(np.float32)


# Levels relative to full scale. Dialogue sits at SPEECH_RMS; everything else is set against it.
SPEECH_RMS = 0.08
MUSIC_RMS = 0.1


@dataclass
class _Turn:
    voice: Voice
    text: str
    catchphrase: bool


@dataclass
class _Scene:
    turns: list[_Turn]
    gaps_s: list[float]
    bed: Path | None
    bed_offset_frac: float
    bed_db: float
    sfx: int | None
    sfx_pos_frac: float


@dataclass
class _Lines:
    """Lines handed out in a shuffled cycle, so no two turns of a corpus repeat until exhausted."""

    pool: list[str]
    rng: random.Random
    queue: list[str] = field(default_factory=list)

    def take(self) -> str:
        if not self.queue:
            self.queue = self.pool[:]
            self.rng.shuffle(self.queue)
        return self.queue.pop()


def _catchphrases(catalogue: Sequence[str]) -> dict[Voice, str]:
    """One recurring line per character (the shortest few of the pool: catchphrases are short)."""
    short = sorted(catalogue, key=lambda s: (len(s), s))[: len(CAST)]
    return dict(zip(CAST, short, strict=True))


def _plan_scene(
    rng: random.Random,
    lines: _Lines,
    *,
    target_s: float,
    catchphrases: dict[Voice, str] | None,
    beds: Sequence[Path],
    sfx: bool,
) -> _Scene:
    # Three leads appear in most scenes, the rest now and then.
    n_chars = rng.choice((2, 2, 3))
    chars = rng.sample(CAST[:3], 1) + rng.sample(CAST, n_chars)
    chars = list(dict.fromkeys(chars))
    turns: list[_Turn] = []
    gaps: list[float] = []
    # ~13 characters per second of speech at these rates; plan a little over the target.
    budget = target_s * 13.0
    while budget > 0:
        voice = chars[len(turns) % len(chars)] if rng.random() < 0.7 else rng.choice(chars)
        if catchphrases and rng.random() < 0.06:
            text, catch = catchphrases[voice], True
        else:
            text = lines.take()
            if rng.random() < 0.3:
                text += " " + lines.take()
            catch = False
        turns.append(_Turn(voice, text, catch))
        gaps.append(rng.uniform(0.15, 0.8))
        budget -= len(text) + 13.0 * gaps[-1]
    with_bed = rng.random() < 0.75
    return _Scene(
        turns=turns,
        gaps_s=gaps,
        bed=rng.choice(list(beds)) if with_bed else None,
        bed_offset_frac=rng.random(),
        bed_db=rng.uniform(10.0, 20.0),
        sfx=rng.randrange(len(SFX)) if sfx and rng.random() < 0.35 else None,
        sfx_pos_frac=rng.random(),
    )


def _speak_all(scenes: Sequence[_Scene], *, workers: int) -> dict[tuple[Voice, str], np.ndarray]:
    wanted = list(dict.fromkeys((t.voice, t.text) for s in scenes for t in s.turns))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        spoken = list(pool.map(lambda vt: speak(vt[1], vt[0]), wanted))
    return {key: _at_rms(y, SPEECH_RMS) for key, y in zip(wanted, spoken, strict=True)}


def _room_tone(n: int, rng: np.random.Generator) -> np.ndarray:
    # Brownish noise ~50 dB below dialogue: digital silence between lines is not what TV has.
    white = rng.standard_normal(n).astype(np.float32)
    tone = signal.lfilter([1.0], [1.0, -0.97], white).astype(np.float32)
    return _at_rms(tone, SPEECH_RMS * 10 ** (-50 / 20))


def _bed(path: Path, n: int, offset_frac: float) -> np.ndarray:
    track = recording(path)
    if track.size <= n:
        return np.resize(track, n)
    start = round(offset_frac * (track.size - n))
    return track[start : start + n]


def _render_scene(
    scene: _Scene,
    speech: dict[tuple[Voice, str], np.ndarray],
    *,
    t0_s: float,
    spans: list[Span],
) -> np.ndarray:
    parts: list[np.ndarray] = []
    t = 0
    for turn, gap_s in zip(scene.turns, scene.gaps_s, strict=True):
        y = speech[(turn.voice, turn.text)]
        if turn.catchphrase:
            spans.append(Span(t0_s + t / SR, t0_s + (t + y.size) / SR, "catchphrase"))
        parts += [y, np.zeros(round(gap_s * SR), np.float32)]
        t += y.size + parts[-1].size
    out = np.concatenate(parts)
    if scene.bed is not None:
        bed = _fade(_bed(scene.bed, out.size, scene.bed_offset_frac), 1.5)
        out += _at_rms(bed, SPEECH_RMS * 10 ** (-scene.bed_db / 20))
    if scene.sfx is not None:
        sfx = recording(SFX[scene.sfx])
        at = round(scene.sfx_pos_frac * max(out.size - sfx.size, 0))
        n = min(sfx.size, out.size - at)
        out[at : at + n] += _at_rms(sfx, SPEECH_RMS * 0.7)[:n]
        spans.append(Span(t0_s + at / SR, t0_s + (at + n) / SR, "sfx"))
    return out


@dataclass
class _Timeline:
    parts: list[np.ndarray] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    n: int = 0

    @property
    def t_s(self) -> float:
        return self.n / SR

    def add(self, y: np.ndarray, kind: str | None = None) -> Span | None:
        span = Span(self.t_s, self.t_s + y.size / SR, kind) if kind else None
        if span:
            self.spans.append(span)
        self.parts.append(np.asarray(y, np.float32))
        self.n += y.size
        return span

    def silence(self, seconds: float) -> None:
        self.add(np.zeros(round(seconds * SR), np.float32))


def render_episode(
    *,
    duration_s: float,
    seed: int,
    lines: _Lines,
    catchphrases: dict[Voice, str] | None,
    beds: Sequence[Path],
    show_music: bool,
    workers: int = 2,
) -> tuple[np.ndarray, Span | None, list[Span]]:
    """Samples at SR (`duration_s` long), the intro span, and every span of shared material.

    show_music: the show's theme, outro, cues and sound effects (False for strangers).
    """
    rng = random.Random(seed)
    outro = _at_rms(_fade(recording(OUTRO), 1.0), MUSIC_RMS) if show_music else None
    body_s = duration_s - (outro.size / SR + 0.5 if outro is not None else 0.0)
    timeline = _Timeline()
    intro: Span | None = None
    if show_music and rng.random() < 0.5:
        _add_scenes(
            timeline, rng.uniform(40.0, 90.0), rng, lines, catchphrases, beds, workers, cues=True
        )
    if show_music:
        timeline.silence(0.5)
        intro = timeline.add(_at_rms(_fade(recording(THEME), 0.5), MUSIC_RMS), "intro")
        timeline.silence(0.5)
    while timeline.t_s < body_s:
        # Scenes are planned and spoken a batch at a time (espeak runs in parallel); how long a
        # scene lasts is only known once spoken, so the batch aims a little past the end.
        _add_scenes(
            timeline,
            body_s - timeline.t_s,
            rng,
            lines,
            catchphrases,
            beds,
            workers,
            cues=show_music,
        )
    y = np.concatenate(timeline.parts)[: round(body_s * SR)]
    spans = [s for s in timeline.spans if s.start_s < body_s]
    if outro is not None:
        y = np.concatenate([_fade(y, 0.3), np.zeros(round(0.5 * SR), np.float32)])
        spans.append(Span(y.size / SR, y.size / SR + outro.size / SR, "outro"))
        y = np.concatenate([y, outro])
    y += _room_tone(y.size, np.random.default_rng(seed))
    np.clip(y, -0.99, 0.99, out=y)
    return y, intro, spans


def _add_scenes(
    timeline: _Timeline,
    span_s: float,
    rng: random.Random,
    lines: _Lines,
    catchphrases: dict[Voice, str] | None,
    beds: Sequence[Path],
    workers: int,
    *,
    cues: bool = False,
) -> None:
    """Scenes filling about `span_s` seconds, each followed by a cue or a short pause."""
    plans: list[tuple[_Scene, int | None, float]] = []
    planned_s = 0.0
    while planned_s < span_s:
        target = rng.uniform(45.0, 110.0)
        scene = _plan_scene(
            rng, lines, target_s=target, catchphrases=catchphrases, beds=beds, sfx=cues
        )
        cue = rng.randrange(len(CUES)) if cues and rng.random() < 0.5 else None
        plans.append((scene, cue, rng.uniform(0.4, 1.5)))
        planned_s += target
    speech = _speak_all([p[0] for p in plans], workers=workers)
    end_s = timeline.t_s + span_s
    for scene, cue, pause_s in plans:
        if timeline.t_s >= end_s:
            return
        timeline.add(_render_scene(scene, speech, t0_s=timeline.t_s, spans=timeline.spans))
        if cue is not None:
            timeline.add(_at_rms(_fade(recording(CUES[cue]), 0.2), MUSIC_RMS), "cue")
        else:
            timeline.silence(pause_s)


# People keep episodes as mp4: a still H.264 picture, as small as a video track gets.
_STILL_VIDEO = Video(
    "color=c=black:s=64x36:r=2", ("-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage")
)


def write_mp4(path: Path, y: np.ndarray, *, sr: int = SR, bitrate: str = "96k") -> None:
    """An mp4 as people keep them: a tiny black H.264 track and AAC audio, index first."""
    audio = ("-c:a", "aac", "-b:a", bitrate)
    encode(path, y, sr=sr, audio_args=audio, video=_STILL_VIDEO, faststart=True)


def _title(rng: random.Random, lines: Sequence[str]) -> str:
    words = [w for w in re.findall(r"[A-Za-z]+", rng.choice(list(lines))) if len(w) > 3]
    picked = words[:3] if len(words) >= 2 else ["Untitled"]
    return " ".join(w.capitalize() for w in picked)


# ---------------------------------------------------------------------------------------------
# The cached corpus


def _recipe(profile: Profile) -> dict[str, object]:
    return {"version": RECIPE_VERSION, "profile": asdict(profile)}


def corpus_dir(profile: Profile, out: Path = OUT) -> Path:
    return out / f"corpus-{profile.name}"


def load_corpus(profile: Profile, out: Path = OUT) -> Corpus | None:
    """The cached corpus for `profile`, or None when missing, stale or incomplete."""
    root = corpus_dir(profile, out)
    try:
        data = json.loads((root / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    if data.get("recipe") != _recipe(profile):
        return None
    corpus = Corpus(
        root=root,
        profile=profile,
        episodes=[EpisodeInfo.from_dict(e) for e in data["episodes"]],
        strangers=[EpisodeInfo.from_dict(e) for e in data["strangers"]],
        generated_s=float(data.get("generated_s", 0.0)),
    )
    if not all(corpus.path(e).is_file() for e in corpus.episodes + corpus.strangers):
        return None
    return corpus


def generate_corpus(
    profile: Profile, out: Path = OUT, *, workers: int = 2, log: bool = True
) -> Corpus:
    """Write the episodes and strangers of `profile` (cached: reuses a matching corpus)."""
    cached = load_corpus(profile, out)
    if cached is not None:
        return cached
    check_sources()
    started = time.perf_counter()
    root = corpus_dir(profile, out)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    catalogue_lines, held_out_lines = line_pools()
    rng = random.Random(profile.seed)
    lines = _Lines(catalogue_lines, random.Random(profile.seed + 1))
    catchphrases = _catchphrases(catalogue_lines)
    corpus = Corpus(root=root, profile=profile)
    # Encoding runs beside rendering; an episode's samples are dropped once it is written.
    writer = ThreadPoolExecutor(max_workers=1)
    writes = []
    for season in range(1, profile.seasons + 1):
        for number in range(1, profile.episodes_per_season + 1):
            code = f"S{season:02d}E{number:02d}"
            title = _title(rng, catalogue_lines)
            rel = f"{SHOW}/Season {season:02d}/{SHOW} - {code} - {title}.mp4"
            y, intro, spans = render_episode(
                duration_s=profile.episode_s,
                seed=rng.randrange(2**31),
                lines=lines,
                catchphrases=catchphrases,
                beds=BED_TRACKS,
                show_music=True,
                workers=workers,
            )
            info = EpisodeInfo(code, season, number, title, rel, y.size / SR, intro, tuple(spans))
            corpus.episodes.append(info)
            writes.append(writer.submit(write_mp4, root / rel, y))
            if log:
                print(f"corpus: {code} rendered ({y.size / SR:.0f} s)", flush=True)
    strange_lines = _Lines(held_out_lines, random.Random(profile.seed + 2))
    for i in range(1, profile.strangers + 1):
        y, _, spans = render_episode(
            duration_s=profile.stranger_s,
            seed=rng.randrange(2**31),
            lines=strange_lines,
            catchphrases=None,
            beds=HELD_OUT_BEDS,
            show_music=False,
            workers=workers,
        )
        rel = f"Held Out/Another Show - X{i:02d}.mp4"
        info = EpisodeInfo(f"X{i:02d}", 0, i, "held out", rel, y.size / SR, None, tuple(spans))
        corpus.strangers.append(info)
        writes.append(writer.submit(write_mp4, root / rel, y))
    writer.shutdown(wait=True)
    for done in writes:
        done.result()
    corpus.generated_s = time.perf_counter() - started
    manifest = {
        "recipe": _recipe(profile),
        "generated_s": round(corpus.generated_s, 1),
        "sr": SR,
        "episodes": [asdict(e) for e in corpus.episodes],
        "strangers": [asdict(e) for e in corpus.strangers],
    }
    (root / "corpus.json").write_text(json.dumps(manifest, indent=1))
    return corpus


def episode_audio(*, sr: int, n_episodes: int) -> list[np.ndarray]:
    """Decoded episodes of the smallest cached-or-generated profile holding `n_episodes`.

    For other benches (bench.params_sweep) that want real-recording episodes as arrays.
    """
    profile = next((p for p in PROFILES.values() if p.n_episodes >= n_episodes), PROFILES["large"])
    corpus = generate_corpus(profile)
    return [read_audio(corpus.path(e), sr=sr) for e in corpus.episodes[:n_episodes]]
