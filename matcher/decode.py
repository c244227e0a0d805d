"""Decode stage: turns a media file, or its bytes, into mono float32 samples.

Everything a user can send (mp4, mov, mkv, webm, m4a, mp3, ogg/opus voice notes, wav) is first
decoded in-process with PyAV (libavformat/libavcodec/libswresample from its wheel): only the audio
stream, resampled straight to mono float32 at `sr`, and only up to the duration cap. Spawning
ffmpeg and piping its output cost ~10-20 ms per clip, more than half of a short clip's answer.
Whatever PyAV cannot decode cleanly (not media, no audio track, damage, a pipe or FIFO, a
configured ffmpeg binary) goes to one ffmpeg subprocess that writes raw little-endian float32
to a pipe we read in chunks; its verdict and messages are the ones users see, so every error
path is the subprocess's, whichever libraries are installed.

This module must never: hold ffmpeg's whole output twice, let an ffmpeg process outlive the call
(timeouts kill it), decode more than `max_duration_s` of audio (plus a 0.1 s look past the cap),
let ffmpeg open network or other protocols on behalf of an uploaded file, put ffmpeg's stderr or
a stack trace in a user-facing message (stderr goes to the exception's `detail` attribute, for
logs), or depend on ffprobe.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import math
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from matcher.errors import (
    DecodeTimeoutError,
    FFmpegNotFoundError,
    MediaError,
    NoAudioStreamError,
    UnreadableMediaError,
)
from matcher.ffmpeg import find_ffmpeg

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=MediaError)

# Linux pipe capacity: one read empties a full pipe.
_CHUNK_BYTES = 1 << 16
_BYTES_PER_SAMPLE = 4
# Asking ffmpeg for a little more than the cap tells us, at the cost of 0.1 s of decoding,
# whether the input went on past it.
_TRUNCATION_MARGIN_S = 0.1
_STDERR_KEEP_LINES = 20
# Samples (at the input's rate) handed to the resampler at a time.
_RESAMPLE_BATCH = 1 << 16
_DETAIL_LINES = 5

_NOT_MEDIA = "This file isn't a video or audio file I can read, or it is damaged."
_NO_SOUND = "This file has no sound track."


@dataclass(frozen=True)
class Audio:
    """Decoded audio.

    samples: float32 [shape=(n,)], mono, in [-1, 1].
    sr: sample rate in Hz.
    truncated: the input went on past `max_duration_s` and only its start was decoded.
    """

    samples: np.ndarray
    sr: int
    truncated: bool = False

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sr


@dataclass(frozen=True)
class _Run:
    """What one ffmpeg invocation produced."""

    pcm: bytearray
    returncode: int
    stderr_lines: list[str]
    timed_out: bool
    elapsed_s: float


def decode_file(
    path: str | os.PathLike[str],
    *,
    sr: int,
    max_duration_s: float,
    timeout_s: float,
    start_s: float = 0.0,
    ffmpeg: str | None = None,
) -> Audio:
    """Decode the audio of a media file to mono float32 at `sr` Hz.

    Decodes at most `max_duration_s` seconds starting `start_s` seconds in; `Audio.truncated`
    says whether the input went on past that. A damaged file that decodes in part returns the
    part. Raises `NoAudioStreamError`, `UnreadableMediaError` or `DecodeTimeoutError` (after
    killing ffmpeg when `timeout_s` seconds of wall-clock time have passed).
    """
    window = _Window(sr=sr, max_duration_s=max_duration_s, timeout_s=timeout_s, start_s=start_s)
    return _decode_path(os.fspath(path), window, ffmpeg=ffmpeg)


def decode_bytes(
    data: bytes,
    *,
    sr: int,
    max_duration_s: float,
    timeout_s: float,
    start_s: float = 0.0,
    ffmpeg: str | None = None,
) -> Audio:
    """Decode media held in memory; same parameters, result and errors as `decode_file`.

    The bytes are piped to ffmpeg. Containers that need seeking (mp4/mov with the index at the
    end) cannot be read from a pipe; those are written to a temporary file, always removed, and
    decoded from there within what is left of `timeout_s`.
    """
    window = _Window(sr=sr, max_duration_s=max_duration_s, timeout_s=timeout_s, start_s=start_s)
    if not data:
        raise _media_error(UnreadableMediaError, "The file is empty.", [])
    if ffmpeg is None:
        # In memory the input is seekable: phone-style MP4s need no temporary file either.
        audio = _decode_in_process(io.BytesIO(data), whitelist="pipe", window=window)
        if audio is not None:
            return audio
    if _index_after_media(data):
        # Known in advance to fail on a pipe: skip the doomed first ffmpeg run (~50 ms).
        return _decode_via_file(data, window, ffmpeg=ffmpeg)
    deadline = time.monotonic() + window.timeout_s
    # Seeking on a pipe is unreliable (wav input yields nothing), so -ss goes after -i: ffmpeg
    # decodes from the start and drops what comes before start_s.
    source = ["-protocol_whitelist", "pipe", "-i", "pipe:0", *window.seek_args()]
    cmd = _command(find_ffmpeg(ffmpeg), source, window)
    run = _run_ffmpeg(cmd, stdin_data=data, timeout_s=window.timeout_s)
    if not _needs_seekable_input(run):
        return _to_audio(run, window)
    log.debug("pipe decode failed (%s); retrying from a temporary file", _detail(run))
    remaining_s = deadline - time.monotonic()
    if remaining_s <= 0:
        raise _timeout_error(run, window.timeout_s)
    try:
        return _decode_via_file(data, replace(window, timeout_s=remaining_s), ffmpeg=ffmpeg)
    except DecodeTimeoutError as error:
        # Report the caller's limit, not the remainder the retry was given.
        raise _timeout_error(run, window.timeout_s) from error


@dataclass(frozen=True)
class _Window:
    """What one decode call asks for: the rate, the stretch of audio and the time it may take."""

    sr: int
    max_duration_s: float
    timeout_s: float
    start_s: float

    def __post_init__(self) -> None:
        # Programming errors, not the user's: plain ValueError, not a MatcherError.
        if self.sr <= 0:
            raise ValueError(f"sr must be positive, got {self.sr}")
        if not (0 < self.max_duration_s < math.inf):
            raise ValueError(
                f"max_duration_s must be positive and finite, got {self.max_duration_s}"
            )
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if not (0 <= self.start_s < math.inf):
            raise ValueError(f"start_s must be >= 0 and finite, got {self.start_s}")

    @property
    def max_samples(self) -> int:
        return round(self.max_duration_s * self.sr)

    def seek_args(self) -> list[str]:
        return ["-ss", _seconds(self.start_s)] if self.start_s > 0 else []


def _decode_path(fs_path: str, window: _Window, *, ffmpeg: str | None) -> Audio:
    if os.path.isfile(fs_path) and os.path.getsize(fs_path) == 0:
        raise _media_error(UnreadableMediaError, "The file is empty.", [])
    file_url = "file:" + os.path.abspath(fs_path)
    if ffmpeg is None and os.path.isfile(fs_path):
        # Regular files only: a FIFO or device may never end, and only a process can be killed.
        audio = _decode_in_process(file_url, whitelist="file", window=window)
        if audio is not None:
            return audio
    # "file:" stops ffmpeg reading a name as an option ("-x.mp4") or a protocol ("http:...").
    # Seeking before -i is fast on files (ffmpeg seeks, then trims to the exact sample).
    source = [*window.seek_args(), "-protocol_whitelist", "file", "-i", file_url]
    cmd = _command(find_ffmpeg(ffmpeg), source, window)
    run = _run_ffmpeg(cmd, stdin_data=None, timeout_s=window.timeout_s)
    log.debug("decoded %s in %.0f ms", fs_path, run.elapsed_s * 1000)
    return _to_audio(run, window)


def _decode_in_process(source: str | IO[bytes], *, whitelist: str, window: _Window) -> Audio | None:
    """Decode with PyAV; None whenever the ffmpeg subprocess should decide instead.

    None means: PyAV is not installed, the input did not open, has no audio stream, failed
    anywhere while decoding (a damaged file then gets ffmpeg's partial decode, as before), or
    gave no samples. Raises only `DecodeTimeoutError`, checked between packets.
    """
    try:
        import av
    except ImportError:
        return None
    started = time.monotonic()
    sr, timeout_s = window.sr, window.timeout_s
    # The same reach as the subprocess: after `start_s`, the cap plus the truncation margin.
    skip = round(window.start_s * sr)
    wanted = skip + round((window.max_duration_s + _TRUNCATION_MARGIN_S) * sr)
    chunks: list[np.ndarray] = []
    have = 0
    try:
        # protocol_whitelist as on the ffmpeg command line: nested opens (playlists) stay local.
        with av.open(source, mode="r", options={"protocol_whitelist": whitelist}) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            for batch in _batched(av, container.decode(stream)):
                for out in resampler.resample(batch):
                    samples = out.to_ndarray().reshape(-1)
                    chunks.append(samples)
                    have += samples.size
                if have >= wanted:
                    break
                if time.monotonic() - started > timeout_s:
                    message = f"Decoding this file took longer than {timeout_s:g} s, so I stopped."
                    raise DecodeTimeoutError(message, detail="in-process decode")
    except DecodeTimeoutError:
        raise
    except Exception as error:  # any failure is the subprocess's to judge
        log.debug("in-process decode failed (%s); running ffmpeg", error)
        return None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    samples = samples[skip:wanted]
    if samples.size == 0:
        return None
    truncated = samples.size > window.max_samples
    samples = np.array(samples[: window.max_samples], dtype=np.float32)
    # Lossy codecs overshoot full scale a little; callers rely on [-1, 1].
    np.clip(samples, -1.0, 1.0, out=samples)
    log.debug("decoded in process in %.0f ms", (time.monotonic() - started) * 1000)
    return Audio(samples=samples, sr=sr, truncated=truncated)


def _batched(av: Any, frames: Iterator[Any]) -> Iterator[Any]:
    """Decoded frames gathered into batches of about `_RESAMPLE_BATCH` samples, then None (the
    resampler's flush). Resampling each ~1,000-sample AAC frame on its own cost more than the
    decoding (PyAV's per-call overhead, 25 ms a 10 s clip); the output is the same."""
    fifo = av.AudioFifo()
    for frame in frames:
        frame.pts = None  # the FIFO checks timestamps run on; gaps are not ours to judge
        fifo.write(frame)
        if fifo.samples >= _RESAMPLE_BATCH:
            yield fifo.read()
    if fifo.samples:
        yield fifo.read()
    yield None


def _decode_via_file(data: bytes, window: _Window, *, ffmpeg: str | None) -> Audio:
    """Decode from a temporary file (always removed), for containers that need seeking."""
    with tempfile.TemporaryDirectory(prefix="citywok-decode-") as tmp:
        media_path = Path(tmp) / "input"
        media_path.write_bytes(data)
        return _decode_path(os.fspath(media_path), window, ffmpeg=ffmpeg)


def _index_after_media(data: bytes) -> bool:
    """Whether an MP4/MOV keeps its index (`moov`) after its media (`mdat`), as phones and
    most encoders write them: such a file cannot be decoded from a pipe.

    Walks the top-level boxes; anything that is not a well-formed MP4 answers False and takes
    the ordinary path.
    """
    if data[4:8] != b"ftyp":
        return False
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"moov":
            return False
        if kind == b"mdat":
            return True
        if size == 1 and pos + 16 <= len(data):
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            return False
        pos += size
    return False


def _seconds(value_s: float) -> str:
    # Fixed notation: ffmpeg's time parser does not accept "1e-05".
    return f"{value_s:.6f}"


def _command(exe: str, source: list[str], window: _Window) -> list[str]:
    return [
        exe,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *source,
        "-vn",
        "-sn",
        "-dn",
        "-ac",
        "1",
        "-ar",
        str(window.sr),
        "-t",
        _seconds(window.max_duration_s + _TRUNCATION_MARGIN_S),
        "-f",
        "f32le",
        "pipe:1",
    ]


def _run_ffmpeg(cmd: list[str], *, stdin_data: bytes | None, timeout_s: float) -> _Run:
    """Run ffmpeg, collecting stdout, the tail of stderr, and whether the timeout killed it."""
    started = time.monotonic()
    stderr_lines: collections.deque[str] = collections.deque(maxlen=_STDERR_KEEP_LINES)
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
    except OSError as error:
        # Found but not runnable (wrong architecture, permissions): the operator must act.
        raise FFmpegNotFoundError(f"Could not run ffmpeg at {cmd[0]}: {error.strerror}") from error
    assert proc.stdout is not None and proc.stderr is not None
    killed_by_timer = threading.Event()

    def on_timeout() -> None:
        if _kill_if_running(proc):
            killed_by_timer.set()

    # Killing ffmpeg closes its stdout, which ends the blocking read below: no polling needed.
    timer = threading.Timer(timeout_s, on_timeout)
    helpers = [threading.Thread(target=_drain_lines, args=(proc.stderr, stderr_lines), daemon=True)]
    if stdin_data is not None:
        assert proc.stdin is not None
        # A separate writer: ffmpeg stops reading stdin while its stdout pipe is full, so writing
        # and reading from one thread would deadlock.
        helpers.append(threading.Thread(target=_feed, args=(proc.stdin, stdin_data), daemon=True))
    try:
        for helper in helpers:
            helper.start()
        timer.start()
        pcm = _read_all(proc.stdout)
        # Still under the timer: ffmpeg closes stdout before it exits, and could hang in between.
        returncode = proc.wait()
    finally:
        timer.cancel()
        # Kills only when reading raised (e.g. KeyboardInterrupt): ffmpeg must not outlive us.
        _kill_if_running(proc)
        proc.wait()
        for helper in helpers:
            helper.join()
        proc.stdout.close()
        proc.stderr.close()
    return _Run(
        pcm=pcm,
        returncode=returncode,
        stderr_lines=list(stderr_lines),
        timed_out=killed_by_timer.is_set(),
        elapsed_s=time.monotonic() - started,
    )


def _kill_if_running(proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        return False
    proc.kill()
    return True


def _read_all(stream: IO[bytes]) -> bytearray:
    # One growing buffer that numpy later wraps without copying.
    pcm = bytearray()
    while chunk := stream.read(_CHUNK_BYTES):
        pcm += chunk
    return pcm


def _drain_lines(stream: IO[bytes], lines: collections.deque[str]) -> None:
    # ffmpeg blocks once its stderr pipe is full, and damaged files can produce many errors.
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if line:
            lines.append(line)


def _feed(stream: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    try:
        # An unbuffered pipe may accept fewer bytes than offered.
        while view:
            written = stream.write(view[:_CHUNK_BYTES])
            view = view[written or 0 :]
    except (BrokenPipeError, ValueError):
        # ffmpeg exits without reading everything once it has max_duration_s of audio, or when
        # it is killed; neither is an error here.
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            stream.close()


def _needs_seekable_input(run: _Run) -> bool:
    """Whether a pipe decode failed in a way that reading from a file may fix."""
    if run.timed_out or _mentions(run, "does not contain any stream"):
        return False
    # "partial file" is what the mov demuxer says when the index it needs is behind data it has
    # already read past on a pipe.
    return len(run.pcm) < _BYTES_PER_SAMPLE or _mentions(run, "partial file")


def _to_audio(run: _Run, window: _Window) -> Audio:
    if run.timed_out:
        raise _timeout_error(run, window.timeout_s)
    n_samples = len(run.pcm) // _BYTES_PER_SAMPLE
    if n_samples == 0:
        raise _empty_output_error(run, window.start_s)
    # A non-zero exit with audio means a damaged or cut-off file: the part that decoded is what
    # the user wants, so it is returned rather than raised.
    if run.returncode != 0:
        log.info("ffmpeg exited %d after partial decode: %s", run.returncode, _detail(run))
    truncated = n_samples > window.max_samples
    n_samples = min(n_samples, window.max_samples)
    # Shrinking in place, then wrapping the same buffer, keeps a single copy of the audio.
    del run.pcm[n_samples * _BYTES_PER_SAMPLE :]
    samples = np.frombuffer(run.pcm, dtype="<f4").astype(np.float32, copy=False)
    # Lossy codecs overshoot full scale a little; callers rely on [-1, 1].
    np.clip(samples, -1.0, 1.0, out=samples)
    return Audio(samples=samples, sr=window.sr, truncated=truncated)


def _empty_output_error(run: _Run, start_s: float) -> MediaError:
    if _mentions(run, "does not contain any stream"):
        return _media_error(NoAudioStreamError, _NO_SOUND, run.stderr_lines)
    if run.returncode != 0 or run.stderr_lines:
        return _media_error(UnreadableMediaError, _NOT_MEDIA, run.stderr_lines)
    # ffmpeg was content: there is an audio track but nothing in it (after start_s).
    if start_s > 0:
        message = f"This file has no sound after {start_s:g} s; it may be shorter than that."
        return _media_error(NoAudioStreamError, message, run.stderr_lines)
    return _media_error(NoAudioStreamError, "This file's sound track is empty.", run.stderr_lines)


def _timeout_error(run: _Run, timeout_s: float) -> DecodeTimeoutError:
    message = f"Decoding this file took longer than {timeout_s:g} s, so I stopped."
    return _media_error(DecodeTimeoutError, message, run.stderr_lines)


def _media_error(cls: type[_E], message: str, stderr_lines: Iterable[str]) -> _E:
    return cls(message, detail="\n".join(list(stderr_lines)[-_DETAIL_LINES:]))


def _mentions(run: _Run, text: str) -> bool:
    return any(text in line for line in run.stderr_lines)


def _detail(run: _Run) -> str:
    return f"exit {run.returncode}: " + " | ".join(run.stderr_lines[-_DETAIL_LINES:])
