"""The recordings and voices bench.corpus makes its show from: which Debian-packaged recording
plays which role (theme, outro, cues, sound effects, music beds, held-out beds, query overlays),
the espeak-ng cast, and reading, speaking and line-picking helpers. Nothing here is generated
at random; roles are fixed, so no query music is ever in the catalogue.

The recordings come from `make bench-accuracy-deps` (apt-get); this module never downloads.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matcher.ffmpeg import find_ffmpeg

# espeak-ng speaks at 22.05 kHz; the music is decoded to the same rate.
SR = 22050

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
