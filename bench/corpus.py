"""A TV show made at run time from real recordings in Debian packages, for the accuracy bench.

Every episode is built like a real one: an optional cold open, the same theme intro, scenes of
dialogue (espeak-ng voices reading fortune-file lines) over music beds cut from recorded game
scores, stingers and sound effects that recur across episodes, catchphrases, and the same outro.
Episodes are written as real media files, mp4 with a tiny black H.264 track and AAC audio, in a
folder laid out like people's libraries:

    bench/out/corpus-<profile>/CityWok Test Show/Season 01/CityWok Test Show - S01E03 - Title.mp4

A few "stranger" episodes, made the same way from held-out music and held-out lines, are never
indexed: clips cut from them must not match. Other held-out tracks are kept for music mixed on
top of queries. Which recordings play which role is fixed below, so no query music is ever in the
catalogue.

Everything is drawn from seeded generators: the same profile always gives the same files. The
corpus is cached under bench/out/ (never committed) and rebuilt only when its recipe changes.
The recordings come from `make bench-accuracy-deps` (apt-get); this module never downloads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal

from bot.synth.encode import Video, encode
from matcher.ffmpeg import find_ffmpeg

OUT = Path(__file__).parent / "out"
# espeak-ng speaks at 22.05 kHz; the music is decoded to the same rate.
SR = 22050
SHOW = "CityWok Test Show"
# Bump when the recipe changes, so cached corpora are rebuilt.
RECIPE_VERSION = 1

# The Makefile's bench-accuracy-deps installs these; keep the two lists in step.
DEBIAN_PACKAGES = (
    "espeak-ng",
    "fortunes",
    "singularity-music",
    "drascula-music",
    "asc-music",
    "sound-theme-freedesktop",
)

_SINGULARITY = Path("/usr/share/games/singularity/music")
_DRASCULA = Path("/usr/share/scummvm/drascula/audio")
_ASC = Path("/usr/share/games/asc/music")
_SOUNDS = Path("/usr/share/sounds/freedesktop/stereo")
_FORTUNES = Path("/usr/share/games/fortunes")


class CorpusError(RuntimeError):
    """A recording or tool the corpus needs is missing."""


@dataclass(frozen=True)
class Excerpt:
    """A stretch of a recording: `duration_s` seconds from `start_s` (None: to the end)."""

    path: Path
    start_s: float = 0.0
    duration_s: float | None = None


# Roles of the recordings. Catalogue music (theme, outro, cues, beds) never plays in a query's
# added music or in a stranger episode, and vice versa.
THEME = Excerpt(_SINGULARITY / "Awakening.ogg", 6.0, 34.0)
OUTRO = Excerpt(_SINGULARITY / "win" / "Apex Aleph.ogg", 0.0, 26.0)
CUES = (
    Excerpt(_DRASCULA / "track12.ogg", 0.0, 8.5),
    Excerpt(_DRASCULA / "track17.ogg", 0.0, 7.0),
    Excerpt(_DRASCULA / "track28.ogg", 0.0, 7.0),
    Excerpt(_DRASCULA / "track29.ogg", 0.0, 6.0),
    Excerpt(_SINGULARITY / "lose" / "Chimes They Fade.ogg", 0.0, 9.0),
)
SFX = tuple(
    Excerpt(_SOUNDS / f"{name}.oga")
    for name in (
        "bell",
        "phone-incoming-call",
        "message-new-instant",
        "complete",
        "camera-shutter",
        "alarm-clock-elapsed",
        "service-login",
        "trash-empty",
    )
)
BED_TRACKS = (
    *(
        _SINGULARITY / f"{name}.ogg"
        for name in (
            "A New Journey",
            "Aberrations",
            "Advanced Simulacra",
            "By-Product",
            "Coherence",
            "Deprecation",
            "Enemy Unknown",
            "Inevitable",
            "Media Threat",
            "Nebula",
            "Orbital Elevator",
            "Through Space",
        )
    ),
    *(
        _DRASCULA / f"track{n}.ogg"
        for n in (3, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19, 20, 22, 24, 26)
    ),
)
# Beds of the stranger episodes (another show, same kind of production).
HELD_OUT_BEDS = (
    _DRASCULA / "track1.ogg",
    _DRASCULA / "track2.ogg",
    _DRASCULA / "track23.ogg",
    _DRASCULA / "track30.ogg",
    _SINGULARITY / "lose" / "March Thee to Dis.ogg",
)
# Music mixed on top of queries (someone's TikTok soundtrack).
OVERLAY_TRACKS = (
    _ASC / "frontiers.mp3",
    _ASC / "machine_wars.mp3",
    _ASC / "time_to_strike.mp3",
)
FORTUNE_FILES = (
    "computers",
    "cookie",
    "definitions",
    "education",
    "food",
    "fortunes",
    "humorists",
    "kids",
    "law",
    "literature",
    "love",
    "medicine",
    "miscellaneous",
    "people",
    "pets",
    "platitudes",
    "science",
    "sports",
    "wisdom",
    "work",
)


@dataclass(frozen=True)
class Voice:
    """An espeak-ng character: voice with variant, pitch 0-99, words per minute."""

    name: str
    pitch: int
    wpm: int


CAST = (
    Voice("en-us+m3", 40, 165),
    Voice("en-gb+f2", 62, 170),
    Voice("en-gb-scotland+m1", 35, 155),
    Voice("en-us+f4", 70, 175),
    Voice("en-gb-x-rp+m7", 50, 160),
    Voice("en-029+f3", 58, 168),
)


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
# Reading recordings and speaking lines


def check_sources() -> None:
    """Raise CorpusError naming what is missing, with the command that installs it."""
    needed = [
        THEME.path,
        OUTRO.path,
        *(c.path for c in CUES),
        *(s.path for s in SFX),
        *BED_TRACKS,
        *HELD_OUT_BEDS,
        *OVERLAY_TRACKS,
        *(_FORTUNES / name for name in FORTUNE_FILES),
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if shutil.which("espeak-ng") is None:
        missing.append("espeak-ng")
    if missing:
        raise CorpusError(
            f"{len(missing)} recordings or tools are missing (first: {missing[0]}); install them "
            f"with `make bench-accuracy-deps` (apt-get install {' '.join(DEBIAN_PACKAGES)})"
        )


def read_audio(
    path: Path, *, sr: int = SR, start_s: float = 0.0, duration_s: float | None = None
) -> np.ndarray:
    """Mono float32 samples of a media file at `sr`, decoded by ffmpeg [shape=(n,)]."""
    seek = ["-ss", f"{start_s:.6f}"] if start_s > 0 else []
    limit = ["-t", f"{duration_s:.6f}"] if duration_s is not None else []
    cmd = [
        find_ffmpeg(),
        "-nostdin",
        "-loglevel",
        "error",
        *seek,
        "-i",
        os.fspath(path),
        *limit,
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(sr),
        "-f",
        "f32le",
        "pipe:1",
    ]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4").copy()


@functools.lru_cache(maxsize=64)
def _recording(excerpt: Excerpt) -> np.ndarray:
    y = read_audio(excerpt.path, start_s=excerpt.start_s, duration_s=excerpt.duration_s)
    y.setflags(write=False)
    return y


def recording(excerpt: Excerpt | Path) -> np.ndarray:
    """A recording's samples at SR, decoded once per process (read-only)."""
    return _recording(excerpt if isinstance(excerpt, Excerpt) else Excerpt(excerpt))


def speak(text: str, voice: Voice) -> np.ndarray:
    """espeak-ng reading `text`, float32 at SR, leading and trailing silence trimmed."""
    with tempfile.TemporaryDirectory(prefix="citywok-espeak-") as tmp:
        wav = Path(tmp) / "line.wav"
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                voice.name,
                "-p",
                str(voice.pitch),
                "-s",
                str(voice.wpm),
                "-w",
                os.fspath(wav),
                "--",
                text,
            ],
            check=True,
            capture_output=True,
        )
        with wave.open(os.fspath(wav)) as w:
            if w.getframerate() != SR:
                raise CorpusError(f"espeak-ng spoke at {w.getframerate()} Hz, expected {SR}")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    y = pcm.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(y) > 1e-3)
    return y[loud[0] : loud[-1] + 1] if loud.size else y[:0]


_ATTRIBUTION = re.compile(r"^\s*--")
_SPEAKABLE = re.compile(r"^[A-Za-z0-9 ,.;:!?'\"()-]+$")


@functools.lru_cache(maxsize=1)
def fortune_lines() -> tuple[str, ...]:
    """Short, plain-prose fortunes, one string each, in a stable order."""
    lines: list[str] = []
    for name in FORTUNE_FILES:
        text = (_FORTUNES / name).read_text(encoding="latin-1")
        for entry in text.split("\n%\n"):
            body = [ln for ln in entry.splitlines() if ln.strip() and not _ATTRIBUTION.match(ln)]
            # Indented lines are verse, tables or ASCII art, which speak badly.
            if not body or any(ln.startswith(("  ", "\t")) for ln in body):
                continue
            line = " ".join(ln.strip() for ln in body)
            if 30 <= len(line) <= 220 and _SPEAKABLE.match(line):
                lines.append(line)
    return tuple(dict.fromkeys(lines))


def line_pools() -> tuple[list[str], list[str]]:
    """(catalogue lines, held-out lines): a fixed split by content digest (1 in 8 held out)."""
    catalogue: list[str] = []
    held_out: list[str] = []
    for line in fortune_lines():
        digest = hashlib.blake2b(line.encode(), digest_size=2).digest()
        (held_out if digest[0] % 8 == 0 else catalogue).append(line)
    return catalogue, held_out


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
