"""Tests for `bot.synth.encode`: files the matcher decodes back to the samples it was given."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from bot.synth.encode import TINY_VIDEO, codec_roundtrip, encode, write_wav
from matcher.decode import decode_file

SR = 8000


def _tone(duration_s: float, freq_hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(duration_s * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_write_wav_round_trips_16_bit_pcm(tmp_path: Path) -> None:
    y = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -1.5], np.float32)
    path = write_wav(tmp_path / "clip.wav", y, sr=SR)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SR)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32768]


def test_encode_writes_a_video_the_matcher_decodes(tmp_path: Path) -> None:
    y = _tone(2.0)
    path = encode(tmp_path / "sub" / "clip.mp4", y, sr=SR, video=TINY_VIDEO, faststart=True)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["clip.mp4"]
    audio = decode_file(path, sr=SR, max_duration_s=10.0, timeout_s=30.0)
    assert abs(audio.duration_s - 2.0) < 0.1
    assert path.read_bytes().find(b"moov") < path.read_bytes().find(b"mdat")  # index first


def test_codec_roundtrip_keeps_length_and_content() -> None:
    y = _tone(1.0)
    out = codec_roundtrip(y, sr=SR, codec="aac", bitrate="32k")
    assert out.shape == y.shape and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out))
    assert np.fft.rfftfreq(out.size, 1 / SR)[int(np.argmax(spectrum))] == 440.0
