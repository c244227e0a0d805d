"""Tests for the decode stage, run against the real ffmpeg on media it encodes itself."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
from scipy import signal

from bot.synth.encode import encode
from matcher.decode import Audio, decode_bytes, decode_file
from matcher.errors import (
    DecodeTimeoutError,
    FFmpegNotFoundError,
    NoAudioStreamError,
    UnreadableMediaError,
)
from matcher.ffmpeg import find_ffmpeg
from tests.media import FORMATS, make_media, make_silent_video, streaming_wav_header

SOURCE_SR = 44100
SR = 8000
# Three one-second sections, each recognisable by its dominant frequency.
SECTION_HZ = (440.0, 1000.0, None)  # the last section is a 300 -> 2500 Hz chirp
DURATION_S = 3.0


class DecodeLimits(TypedDict):
    sr: int
    max_duration_s: float
    timeout_s: float


def limits(*, sr: int = SR, max_duration_s: float = 60.0, timeout_s: float = 10.0) -> DecodeLimits:
    return {"sr": sr, "max_duration_s": max_duration_s, "timeout_s": timeout_s}


DECODE = limits()


def _source_signal() -> np.ndarray:
    """Stereo test signal [shape=(n, 2)]: tone 440 Hz, tone 1 kHz, chirp; channels differ."""
    t = np.arange(int(SOURCE_SR * 1.0)) / SOURCE_SR
    sections = [
        np.sin(2 * np.pi * 440.0 * t),
        np.sin(2 * np.pi * 1000.0 * t),
        signal.chirp(t, f0=300.0, t1=1.0, f1=2500.0),
    ]
    # Short fades: clicks at section edges would smear the spectrum the checks look at.
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    left = 0.5 * np.concatenate([s * fade for s in sections])
    # Unequal channels check that the mono downmix keeps the content.
    return np.stack([left, 0.6 * left], axis=1)


SOURCE = _source_signal()
# What a perfect decoder would return: the mono mix, resampled to SR.
REFERENCE = signal.resample_poly(SOURCE.mean(axis=1), SR, SOURCE_SR).astype(np.float32)


def dominant_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * sr / len(samples))


def best_correlation(decoded: np.ndarray, reference: np.ndarray, max_lag: int) -> float:
    """Peak normalised cross-correlation within ±max_lag samples (codec delay, rounding)."""
    n = min(len(decoded), len(reference))
    a, b = decoded[:n].astype(np.float64), reference[:n].astype(np.float64)
    full = signal.correlate(a, b, mode="full", method="fft")
    centre = n - 1
    window = full[centre - max_lag : centre + max_lag + 1]
    return float(np.max(window) / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_sections(audio: Audio, first_section: int = 0) -> None:
    """Each whole second of `audio` holds the tone of the matching source section."""
    whole_seconds = len(audio.samples) // audio.sr
    for i, hz in enumerate(SECTION_HZ[first_section:][:whole_seconds]):
        if hz is None:
            continue
        part = audio.samples[int((i + 0.1) * audio.sr) : int((i + 0.9) * audio.sr)]
        assert dominant_hz(part, audio.sr) == pytest.approx(hz, abs=5.0)


def ffmpeg_children() -> list[int]:
    """Pids of ffmpeg processes that are children of this test process (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and "ffmpeg" in fields["Name"]:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


class _MediaCache(dict[str, Path]):
    """Format name ("mp4", "mp4+faststart", ...) -> file, encoded on first use."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def __missing__(self, fmt: str) -> Path:
        base = fmt.removesuffix("+faststart")
        path = make_media(self.directory, SOURCE, SOURCE_SR, base, faststart=base != fmt)
        self[fmt] = path
        return path


@pytest.fixture(scope="module")
def media(media_dir: Path) -> dict[str, Path]:
    # Lazy, so a test run selecting one format encodes only that one.
    return _MediaCache(media_dir)


# --- every format users send -------------------------------------------------------------------


# How much of the waveform a format keeps. Opus at 32 kb/s in voip mode keeps speech, not the
# waveform, and decoders differ in how much: the wheel's ffmpeg (libopus) gives 0.96, Debian's
# ffmpeg 5.1 (its native Opus decoder) 0.935. The tones per second are checked exactly either way.
MIN_CORRELATION = {"opus": 0.85}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_format_decodes_to_mono_float32_with_content_intact(
    media: dict[str, Path], fmt: str
) -> None:
    audio = decode_file(media[fmt], **DECODE)

    assert audio.sr == SR
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert not audio.truncated
    assert audio.duration_s == pytest.approx(DURATION_S, abs=0.05)
    assert np.abs(audio.samples).max() <= 1.0
    assert_sections(audio)
    assert best_correlation(audio.samples, REFERENCE, max_lag=SR // 20) > MIN_CORRELATION.get(
        fmt, 0.95
    )


@pytest.mark.parametrize("fmt", ["mp4+faststart", "webm", "ogg", "opus", "mp3", "wav"])
def test_decode_bytes_matches_decode_file(media: dict[str, Path], fmt: str) -> None:
    from_file = decode_file(media[fmt], **DECODE)
    from_bytes = decode_bytes(media[fmt].read_bytes(), **DECODE)

    # From a pipe ffmpeg cannot always trim encoder padding at the end (mp3: a few ms more), and
    # the resampler's last few samples then differ too.
    assert from_bytes.duration_s == pytest.approx(from_file.duration_s, abs=0.01)
    n = min(len(from_file.samples), len(from_bytes.samples)) - SR // 100
    np.testing.assert_allclose(from_bytes.samples[:n], from_file.samples[:n], atol=1e-4)


def test_requested_sample_rate_is_honoured(media: dict[str, Path]) -> None:
    audio = decode_file(media["mp4"], **limits(sr=22050))

    assert audio.sr == 22050
    assert len(audio.samples) == pytest.approx(DURATION_S * 22050, abs=0.05 * 22050)
    assert_sections(audio)


# --- inputs that are not usable audio ----------------------------------------------------------


def test_video_without_audio_stream(media_dir: Path) -> None:
    video = make_silent_video(media_dir, duration_s=1.0)

    with pytest.raises(NoAudioStreamError) as from_file:
        decode_file(video, **DECODE)
    with pytest.raises(NoAudioStreamError):
        decode_bytes(video.read_bytes(), **DECODE)
    # ffmpeg's words go to the log detail; the message is for people.
    assert "does not contain any stream" in from_file.value.detail  # type: ignore[attr-defined]
    assert "Output file" not in str(from_file.value)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"Season 3, Episode 11. Not a video.\n" * 20, id="text"),
        pytest.param(np.random.default_rng(7).bytes(50_000), id="random-bytes"),
        pytest.param(b"", id="empty"),
    ],
)
def test_not_media_is_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)

    with pytest.raises(UnreadableMediaError) as from_file:
        decode_file(path, **DECODE)
    with pytest.raises(UnreadableMediaError):
        decode_bytes(content, **DECODE)
    message = str(from_file.value)
    assert "Traceback" not in message
    assert "ffmpeg" not in message.lower()
    assert isinstance(from_file.value.detail, str)  # type: ignore[attr-defined]


def test_cut_faststart_mp4_returns_the_part_that_decodes(
    media: dict[str, Path], tmp_path: Path
) -> None:
    whole = media["mp4+faststart"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])

    audio = decode_file(cut, **DECODE)

    assert 0.5 < audio.duration_s < DURATION_S - 0.5
    assert_sections(Audio(audio.samples[: SR * 1], SR))
    assert decode_bytes(cut.read_bytes(), **DECODE).duration_s == pytest.approx(
        audio.duration_s, abs=0.05
    )


def test_cut_mp4_with_index_at_end_is_unreadable(media: dict[str, Path], tmp_path: Path) -> None:
    # The index (moov) was in the half that is gone: nothing can be decoded.
    whole = media["mp4"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])

    with pytest.raises(UnreadableMediaError):
        decode_file(cut, **DECODE)


# --- limits: duration cap, timeout, start offset -----------------------------------------------


def test_max_duration_caps_and_flags_truncation(media: dict[str, Path]) -> None:
    capped = decode_file(media["ogg"], **limits(max_duration_s=1.0))
    exact = decode_file(media["wav"], **limits(max_duration_s=DURATION_S))
    capped_bytes = decode_bytes(media["wav"].read_bytes(), **limits(max_duration_s=1.5))

    assert capped.truncated
    assert len(capped.samples) == SR
    assert_sections(capped)
    assert not exact.truncated
    assert len(exact.samples) == DURATION_S * SR
    assert capped_bytes.truncated
    assert len(capped_bytes.samples) == 1.5 * SR


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe; the test's writer thread feeds it like a live stream that never ends."""
    path = tmp_path / "live.wav"
    os.mkfifo(path)
    yield path
    # Unblock a writer still waiting for a reader, so its thread can finish.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))


def _stream_forever(path: Path, *, sr: int, seconds_per_write: float, pause_s: float) -> None:
    """Write an unending WAV into `path` until the reader goes away."""
    t = np.arange(int(sr * seconds_per_write)) / sr
    chunk = (np.sin(2 * np.pi * 440.0 * t) * 16000).astype("<i2").tobytes()
    try:
        with open(path, "wb", buffering=0) as out:
            out.write(streaming_wav_header(sr))
            while True:
                out.write(chunk)
                time.sleep(pause_s)
    except BrokenPipeError:
        pass  # ffmpeg finished or was killed: the end of the stream, as intended


def test_endless_input_is_capped_by_max_duration(fifo: Path) -> None:
    writer = threading.Thread(
        target=_stream_forever,
        args=(fifo,),
        kwargs={"sr": SR, "seconds_per_write": 0.5, "pause_s": 0.0},
        daemon=True,
    )
    writer.start()

    audio = decode_file(fifo, **limits(max_duration_s=2.0))

    assert audio.truncated
    assert len(audio.samples) == 2 * SR
    assert dominant_hz(audio.samples, SR) == pytest.approx(440.0, abs=5.0)
    writer.join(timeout=5)
    assert not writer.is_alive()


def test_slow_endless_input_times_out_and_leaves_no_ffmpeg(fifo: Path) -> None:
    # Half real time: the cap is never reached, so only the timeout can end the decode.
    writer = threading.Thread(
        target=_stream_forever,
        args=(fifo,),
        kwargs={"sr": SR, "seconds_per_write": 0.05, "pause_s": 0.1},
        daemon=True,
    )
    writer.start()
    started = time.monotonic()

    with pytest.raises(DecodeTimeoutError) as raised:
        decode_file(fifo, **limits(timeout_s=1.0))

    elapsed_s = time.monotonic() - started
    assert 1.0 <= elapsed_s < 3.0
    assert "1 s" in str(raised.value)
    assert ffmpeg_children() == []
    writer.join(timeout=5)
    assert not writer.is_alive()


@pytest.mark.parametrize("fmt", ["wav", "mp4+faststart", "ogg"])
def test_start_offset(media: dict[str, Path], fmt: str) -> None:
    from_file = decode_file(media[fmt], **DECODE, start_s=1.0)
    from_bytes = decode_bytes(media[fmt].read_bytes(), **DECODE, start_s=1.0)

    for audio in (from_file, from_bytes):
        assert audio.duration_s == pytest.approx(DURATION_S - 1.0, abs=0.05)
        assert_sections(audio, first_section=1)


def test_start_after_the_end(media: dict[str, Path]) -> None:
    with pytest.raises(NoAudioStreamError, match="after 10 s"):
        decode_file(media["wav"], **DECODE, start_s=10.0)


# --- decode_bytes: containers that need seeking ------------------------------------------------


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point `tempfile` at an empty directory so leftovers can be seen."""
    directory = tmp_path / "tempdir"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture(scope="module")
def index_at_end_m4a(media_dir: Path) -> Path:
    """An m4a with moov after a data section too large for ffmpeg to buffer from a pipe."""
    t = np.arange(SOURCE_SR * 8) / SOURCE_SR
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    aac = ("-c:a", "aac", "-b:a", "192k")
    return encode(media_dir / "index-at-end.m4a", tone, sr=SOURCE_SR, audio_args=aac)


def test_decode_bytes_falls_back_to_a_temp_file_and_removes_it(
    index_at_end_m4a: Path, private_tempdir: Path
) -> None:
    data = index_at_end_m4a.read_bytes()
    # Precondition: this file really cannot be decoded from a pipe.
    piped = subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-f", "f32le", "-"],
        input=data,
        capture_output=True,
        check=False,
    )
    assert piped.stdout == b""

    audio = decode_bytes(data, **DECODE)

    assert audio.duration_s == pytest.approx(8.0, abs=0.05)
    assert dominant_hz(audio.samples, SR) == pytest.approx(440.0, abs=5.0)
    assert list(private_tempdir.iterdir()) == []


def test_decode_bytes_removes_the_temp_file_on_failure(private_tempdir: Path) -> None:
    with pytest.raises(UnreadableMediaError):
        decode_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 5000, **DECODE)

    assert list(private_tempdir.iterdir()) == []


# --- finding ffmpeg ----------------------------------------------------------------------------


def test_find_ffmpeg_returns_an_executable() -> None:
    exe = find_ffmpeg()

    assert os.access(exe, os.X_OK)
    assert find_ffmpeg(exe) == exe


def test_find_ffmpeg_rejects_a_missing_configured_binary(tmp_path: Path) -> None:
    with pytest.raises(FFmpegNotFoundError, match="does not exist"):
        find_ffmpeg(str(tmp_path / "no-such-ffmpeg"))


def test_decode_with_a_missing_configured_binary(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(FFmpegNotFoundError):
        decode_file(media["wav"], **DECODE, ffmpeg=str(tmp_path / "no-such-ffmpeg"))


def test_decode_with_a_configured_binary_that_cannot_run(
    media: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "ffmpeg"
    broken.write_bytes(b"\x7fELF but not really")
    broken.chmod(0o755)

    with pytest.raises(FFmpegNotFoundError, match="Could not run ffmpeg"):
        decode_file(media["wav"], **DECODE, ffmpeg=str(broken))


def test_mp4_layout_is_read_from_the_box_headers(media: dict[str, Path]) -> None:
    """Phone-style files (index after the media) are recognised before any ffmpeg run, so they
    are decoded once, from a file; faststart files and other formats stream through the pipe."""
    from matcher.decode import _index_after_media

    assert _index_after_media(media["mp4"].read_bytes())
    assert not _index_after_media(media["mp4+faststart"].read_bytes())
    assert not _index_after_media(media["ogg"].read_bytes())
    assert not _index_after_media(b"\0\0\0\x08ftyp")  # truncated: ordinary path
    audio = decode_bytes(media["mp4"].read_bytes(), sr=SR, max_duration_s=60, timeout_s=30)
    assert audio.samples.size > 0


# --- in-process decoding (PyAV) against the ffmpeg subprocess ----------------------------------


@pytest.mark.parametrize("fmt", ["mp4", "mp4+faststart", "webm", "ogg", "opus", "mp3", "wav"])
def test_in_process_decode_matches_the_ffmpeg_subprocess(media: dict[str, Path], fmt: str) -> None:
    # A configured binary always runs the subprocess: the slow reference for the fast path.
    reference = decode_file(media[fmt], **DECODE, ffmpeg=find_ffmpeg())
    fast = decode_file(media[fmt], **DECODE)
    from_bytes = decode_bytes(media[fmt].read_bytes(), **DECODE)

    for audio in (fast, from_bytes):
        assert audio.sr == reference.sr
        assert audio.samples.dtype == np.float32
        assert audio.truncated == reference.truncated
        # Encoder padding at the end may be trimmed differently (a few ms).
        assert audio.duration_s == pytest.approx(reference.duration_s, abs=0.02)
        n = min(len(audio.samples), len(reference.samples)) - SR // 100
        np.testing.assert_allclose(audio.samples[:n], reference.samples[:n], atol=2e-3)


def test_in_process_decode_honours_the_cap_and_the_start(media: dict[str, Path]) -> None:
    capped = decode_file(media["mp4+faststart"], **limits(max_duration_s=1.0))
    started = decode_file(media["mp4+faststart"], **DECODE, start_s=1.0)
    reference = decode_file(media["mp4+faststart"], **DECODE, start_s=1.0, ffmpeg=find_ffmpeg())

    assert capped.truncated
    assert len(capped.samples) == SR
    assert_sections(capped)
    assert started.duration_s == pytest.approx(reference.duration_s, abs=0.02)
    assert_sections(started, first_section=1)


def test_without_pyav_the_subprocess_decodes(
    media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError

    audio = decode_bytes(media["mp4"].read_bytes(), **DECODE)

    assert audio.duration_s == pytest.approx(DURATION_S, abs=0.05)
    assert_sections(audio)
