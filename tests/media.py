"""Builds real media files for tests by running the real ffmpeg on generated audio.

Test signals are numpy arrays encoded by `bot.synth.encode` into the containers users actually
send. Nothing here is a fake: if the bundled ffmpeg cannot encode a format, the test that needs
it is skipped with the reason, never silently passed.

Must never download media or depend on files outside the test's tmp_path.
"""

from __future__ import annotations

import functools
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bot.synth.encode import AAC_128K, TINY_VIDEO, Video, encode, run_ffmpeg
from matcher.ffmpeg import find_ffmpeg


@dataclass(frozen=True)
class Format:
    """How to encode one container: its extension, codec arguments and needed encoders."""

    suffix: str
    audio_args: tuple[str, ...]
    video: Video | None = None
    encoders: tuple[str, ...] = ()

    @property
    def has_video(self) -> bool:
        return self.video is not None


_VP8 = Video(
    TINY_VIDEO.source, ("-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "50k")
)

FORMATS: dict[str, Format] = {
    "mp4": Format(".mp4", AAC_128K, TINY_VIDEO, ("aac", "libx264")),
    "mov": Format(".mov", AAC_128K, TINY_VIDEO, ("aac", "libx264")),
    "mkv": Format(".mkv", AAC_128K, TINY_VIDEO, ("aac", "libx264")),
    "webm": Format(".webm", ("-c:a", "libopus", "-b:a", "96k"), _VP8, ("libopus", "libvpx")),
    "m4a": Format(".m4a", AAC_128K, encoders=("aac",)),
    "mp3": Format(".mp3", ("-c:a", "libmp3lame", "-b:a", "128k"), encoders=("libmp3lame",)),
    "ogg": Format(".ogg", ("-c:a", "libvorbis", "-q:a", "5"), encoders=("libvorbis",)),
    # Telegram voice notes: Ogg Opus, mono, 48 kHz, speech-tuned, low bitrate.
    "opus": Format(
        ".opus",
        ("-c:a", "libopus", "-ac", "1", "-ar", "48000", "-application", "voip", "-b:a", "32k"),
        encoders=("libopus",),
    ),
    "wav": Format(".wav", ("-c:a", "pcm_s16le"), encoders=("pcm_s16le",)),
}


@functools.cache
def available_encoders() -> frozenset[str]:
    """Names of the encoders the ffmpeg under test was built with (`ffmpeg -encoders`)."""
    listing = subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    # Rows look like " A....D aac    AAC (Advanced Audio Coding)"; the header has no flags.
    rows = (line.split() for line in listing.splitlines())
    return frozenset(cols[1] for cols in rows if len(cols) >= 2 and len(cols[0]) == 6)


def require_encoders(*names: str) -> None:
    missing = sorted(set(names) - available_encoders())
    if missing:
        pytest.skip(f"the ffmpeg under test has no {', '.join(missing)} encoder")


def streaming_wav_header(sr: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header with unknown length, as live streams write it."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, channels, sr, sr * channels * 2, channels * 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", unknown)
    )


def make_media(
    tmp_path: Path, samples: np.ndarray, sr: int, fmt: str, *, faststart: bool = False
) -> Path:
    """Encode `samples` (float, [shape=(n,) or (n, channels)]) at `sr` Hz into format `fmt`.

    Video formats get a tiny black video stream as long as the audio. mp4-family files keep
    ffmpeg's default index-at-the-end layout unless `faststart`.
    """
    spec = FORMATS[fmt]
    require_encoders(*spec.encoders)
    name = f"clip-{fmt}{'-faststart' if faststart else ''}{spec.suffix}"
    return encode(
        tmp_path / name,
        samples,
        sr=sr,
        audio_args=spec.audio_args,
        video=spec.video,
        faststart=faststart,
    )


def make_silent_video(tmp_path: Path, duration_s: float) -> Path:
    """An mp4 with a video stream and no audio stream at all."""
    require_encoders("libx264")
    output = tmp_path / "no-audio.mp4"
    source = f"{TINY_VIDEO.source}:d={duration_s:.6f}"
    run_ffmpeg("-f", "lavfi", "-i", source, *TINY_VIDEO.args, str(output))
    return output
