"""Generated audio as the files people send: WAV, and any container and codec through ffmpeg.

The one place tests, benchmarks and the demo encode audio. Samples go to ffmpeg on stdin as
float32, so no temporary WAV is written; the ffmpeg is the one the matcher decodes with
(`matcher.ffmpeg.find_ffmpeg`: the configured binary, the system one or the bundled one).
Encoding never reads recordings and never touches the network.
"""

from __future__ import annotations

import os
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matcher.ffmpeg import find_ffmpeg

AAC_128K = ("-c:a", "aac", "-b:a", "128k")


@dataclass(frozen=True)
class Video:
    """A generated picture to put beside the audio: an ffmpeg lavfi source and its codec."""

    source: str  # e.g. "color=c=black:s=32x32:r=10"; the duration is the audio's
    args: tuple[str, ...]


# Enough for the container to be a real video, cheap to encode.
TINY_VIDEO = Video(
    "color=c=black:s=32x32:r=10", ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
)


def write_wav(path: str | os.PathLike[str], y: np.ndarray, *, sr: int) -> Path:
    """Write 16-bit PCM [shape=(n,) or (n, channels)]; samples outside [-1, 1] are clipped."""
    frames = np.asarray(y, np.float64)
    frames = frames if frames.ndim == 2 else frames[:, np.newaxis]
    pcm = np.clip(np.rint(frames * 32767), -32768, 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as out:
        out.setnchannels(frames.shape[1])
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes(pcm.tobytes())
    return Path(path)


def run_ffmpeg(*args: str, stdin: bytes | None = None) -> bytes:
    """Run ffmpeg quietly, overwriting its outputs; returns what it wrote to stdout.

    Raises `subprocess.CalledProcessError` (with ffmpeg's stderr) when it fails.
    """
    return subprocess.run(
        [find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        input=stdin,
        capture_output=True,
        check=True,
    ).stdout


def _raw_input(y: np.ndarray, *, sr: int) -> tuple[list[str], bytes]:
    """ffmpeg arguments for samples [shape=(n,) or (n, channels)] on stdin, and those bytes."""
    frames = np.asarray(y, "<f4")
    channels = 1 if frames.ndim == 1 else frames.shape[1]
    args = ["-f", "f32le", "-ar", str(sr), "-ac", str(channels), "-i", "pipe:0"]
    return args, np.ascontiguousarray(frames).tobytes()


def encode(
    path: str | os.PathLike[str],
    y: np.ndarray,
    *,
    sr: int,
    audio_args: Sequence[str] = AAC_128K,
    video: Video | None = None,
    faststart: bool = False,
) -> Path:
    """Encode samples [shape=(n,) or (n, channels)] at `sr` Hz into the file `path`.

    `audio_args` are ffmpeg's codec arguments (`-c:a`, `-b:a`, `-ar`, `-ac`...); the container is
    the one ffmpeg picks for the file's suffix. `video`, if given, runs as long as the audio.
    mp4-family files keep ffmpeg's default layout (index at the end, as phones write them)
    unless `faststart`. The file appears complete or not at all (written beside it, renamed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    raw, samples = _raw_input(y, sr=sr)
    args = [*raw]
    if video is not None:
        duration_s = len(y) / sr
        args += ["-f", "lavfi", "-i", f"{video.source}:d={duration_s:.6f}", "-map", "0:a"]
        args += ["-map", "1:v", *video.args]
    args += [*audio_args, *(["-movflags", "+faststart"] if faststart else []), str(partial)]
    try:
        run_ffmpeg(*args, stdin=samples)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


# (muxer, demuxer) for a codec round trip: ffmpeg writes raw AAC as "adts" but reads it as "aac".
_STREAMS = {"aac": ("adts", "aac"), "libopus": ("ogg", "ogg")}


def codec_roundtrip(y: np.ndarray, *, sr: int, codec: str, bitrate: str) -> np.ndarray:
    """Mono `y` encoded (`aac` in ADTS or `libopus` in Ogg) and decoded back to `sr`, float32.

    Cut or zero-padded to the input's length [shape=y.shape]; the codec's delay is kept.
    """
    muxer, demuxer = _STREAMS[codec]
    raw, samples = _raw_input(y, sr=sr)
    encoded = run_ffmpeg(*raw, "-c:a", codec, "-b:a", bitrate, "-f", muxer, "pipe:1", stdin=samples)
    decoded = run_ffmpeg("-f", demuxer, "-i", "pipe:0", *raw[:-2], "pipe:1", stdin=encoded)
    out = np.frombuffer(decoded, dtype="<f4")
    if out.size >= y.size:
        return np.array(out[: y.size], np.float32)
    return np.concatenate([out, np.zeros(y.size - out.size, np.float32)]).astype(np.float32)
