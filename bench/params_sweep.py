"""Why the fingerprint parameters are what they are: a sweep of the choices that shape the index.

For each candidate setting (sample rate, reference peak density, reference fan-out) this builds
an in-memory index of the same catalogue and measures what the choice trades: index bytes per
hour against the share of 3 s clips found (right episode, timestamp within ±1 s) clean, under
music at 0 dB, in white noise at 0 dB, through 24 kbps AAC, and as phone re-recordings, plus
null clips answered `match` and the search time per clip.

    python -m bench.params_sweep [--corpus synth|debian] [--episodes 10] [--clips 40]

Results go to bench/out/params_sweep.md (and .json); the chosen row is copied into
bench/RESULTS.md by hand with the reasoning. Not a unit test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import signal

from bot.synth.degrade import add_noise, mix, phone_recording
from bot.synth.encode import codec_roundtrip
from bot.synth.episodes import make_catalogue, make_episode
from matcher.hashes import peaks2hashes
from matcher.identify import Matcher
from matcher.index import Episode, FingerprintIndex
from matcher.params import FingerprintParams, SearchParams
from matcher.peaks import audio2peaks
from matcher.repeats import find_repeats

OUT = Path(__file__).parent / "out"
SOURCE_SR = 16000
CLIP_S = 3.0
BASE = FingerprintParams()

# (label, changes to the default parameters); the first row is the default.
SETTINGS: list[tuple[str, dict[str, object]]] = [
    ("default (8 kHz, 14 peaks/s, fan-out 4)", {}),
    ("sr 11025 Hz", {"sr": 11025, "hop_length": 176, "n_fft": 1408, "fmax_hz": 5000.0}),
    ("sparser: 8 peaks/s", {"ref_peaks_per_s": 8.0}),
    ("denser: 20 peaks/s", {"ref_peaks_per_s": 20.0}),
    ("fan-out 2", {"ref_fan_out": 2}),
    ("fan-out 6", {"ref_fan_out": 6}),
    ("fan-out 8, 8 peaks/s", {"ref_fan_out": 8, "ref_peaks_per_s": 8.0}),
]


@dataclass(frozen=True)
class Clip:
    episode: int
    start_s: float
    samples: np.ndarray  # at SOURCE_SR


def _resample(y: np.ndarray, sr: int) -> np.ndarray:
    if sr == SOURCE_SR:
        return y
    g = np.gcd(sr, SOURCE_SR)
    return signal.resample_poly(y, sr // g, SOURCE_SR // g).astype(np.float32)


def _aac(y: np.ndarray) -> np.ndarray:
    return codec_roundtrip(y, sr=SOURCE_SR, codec="aac", bitrate="32k")


def distortions(music: np.ndarray, rng: np.random.Generator) -> dict[str, Callable]:  # type: ignore[type-arg]
    def music_on_top(y: np.ndarray) -> np.ndarray:
        start = int(rng.integers(0, music.size - y.size))
        return mix(y, music[start : start + y.size], snr_db=0.0)

    return {
        "clean": lambda y: y,
        "music 0 dB": music_on_top,
        "noise 0 dB": lambda y: add_noise(y, snr_db=0.0, rng=rng),
        "aac 24k": _aac,
        "phone": lambda y: phone_recording(y, sr=SOURCE_SR, rng=rng),
    }


def _catalogue(kind: str, n_episodes: int) -> list[np.ndarray]:
    if kind == "synth":
        return make_catalogue(sr=SOURCE_SR, n_episodes=n_episodes, duration_s=300.0, seed=5)
    from bench import corpus  # the Debian-recordings corpus of the accuracy benchmark

    return corpus.episode_audio(sr=SOURCE_SR, n_episodes=n_episodes)  # type: ignore[attr-defined,no-any-return]


def _index(episodes: list[np.ndarray], params: FingerprintParams) -> FingerprintIndex:
    table, hashes, start = [], [], 0
    for i, y in enumerate(episodes):
        peaks = audio2peaks(
            _resample(y, params.sr), params=params, peaks_per_s=params.ref_peaks_per_s
        )
        table.append(
            Episode(
                id=f"S01E{i + 1:02d}",
                season=1,
                number=i + 1,
                title=None,
                duration_s=y.size / SOURCE_SR,
                checksum="-",
                start_frame=start,
                n_frames=peaks.n_frames,
            )
        )
        hashes.append(peaks2hashes(peaks, params=params))
        start += peaks.n_frames
    index = FingerprintIndex.from_hashes(params=params, episodes=table, hashes=hashes)
    index.set_repeats(find_repeats(index))
    return index


def run(kind: str, n_episodes: int, n_clips: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(2024)
    episodes = _catalogue(kind, n_episodes)
    music = make_episode(sr=SOURCE_SR, duration_s=120.0, seed=999)  # not in the catalogue
    strangers = [
        make_episode(sr=SOURCE_SR, duration_s=CLIP_S, seed=10_000 + i) for i in range(n_clips)
    ]
    clips = []
    for _ in range(n_clips):
        e = int(rng.integers(0, len(episodes)))
        start = float(rng.uniform(30.0, episodes[e].size / SOURCE_SR - CLIP_S - 1))
        a = round(start * SOURCE_SR)
        clips.append(Clip(e, start, episodes[e][a : a + round(CLIP_S * SOURCE_SR)]))
    variants = {
        name: [fn(c.samples) for c in clips]
        for name, fn in distortions(music, np.random.default_rng(7)).items()
    }
    hours = sum(y.size for y in episodes) / SOURCE_SR / 3600
    rows = []
    for label, changes in SETTINGS:
        params = replace(BASE, **changes)  # type: ignore[arg-type]
        index = _index(episodes, params)
        matcher = Matcher(index, search=SearchParams())
        # Postings grow with the catalogue; the CSR offsets table is a fixed 2 MB.
        row: dict[str, object] = {
            "setting": label,
            "postings MB/h": index.positions.nbytes / 1e6 / hours,
        }
        times = []
        for name, audio in variants.items():
            right = 0
            for clip, y in zip(clips, audio, strict=True):
                started = time.perf_counter()
                result = matcher.identify(_resample(y, params.sr))
                times.append(time.perf_counter() - started)
                best = result.best
                right += bool(
                    result.status == "match"
                    and best is not None
                    and best.episode == f"S01E{clip.episode + 1:02d}"
                    and abs(best.offset_s - clip.start_s) <= 1.0
                )
            row[name] = right / len(clips)
        false = sum(matcher.identify(_resample(y, params.sr)).status == "match" for y in strangers)
        row["null match"] = false / len(strangers)
        row["ms/clip p50"] = float(np.median(times) * 1000)
        rows.append(row)
        print(row, flush=True)
    return rows


def _markdown(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=["synth", "debian"], default="synth")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args()
    rows = run(args.corpus, args.episodes, args.clips)
    OUT.mkdir(exist_ok=True)
    (OUT / "params_sweep.json").write_text(json.dumps(rows, indent=1))
    (OUT / "params_sweep.md").write_text(_markdown(rows))
    print(_markdown(rows))


if __name__ == "__main__":
    main()
