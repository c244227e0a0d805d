"""Search cost and accuracy on a 100-hour index, per distortion (the issue-3 matcher numbers).

The index is real fingerprints of synthetic audio, not synthesised postings: 300 episodes of
20 minutes from `bot.synth` (one show: shared intro, cues and cast), fingerprinted with the
default parameters (18.1 M postings, 0.72 MB per hour). Fingerprinting them takes ~10 minutes
of one core, so the hashes are cached in bench/out/. Clips are cut from the same episodes
(regenerated from their seeds) and degraded; null clips are dialogue of other casts (see the
note on synthetic music in the report) and, separately, whole synthetic scenes of other shows.

Times are CPU seconds of this process (time.process_time) for fingerprint + search of a clip,
not decode: the machine is shared, and CPU time is what the one-core budget is about.

    nice python -m bench.search_scale [--episodes 300] [--clips 20] [--only clean,speed]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np

from bot.synth.degrade import change_speed, mix, phone_recording
from bot.synth.episodes import episode_seed, make_dialogue, make_episode
from bot.synth.music import make_cues, make_intro
from matcher.hashes import Hashes, peaks2hashes
from matcher.identify import Matcher
from matcher.index import Episode, FingerprintIndex
from matcher.params import FingerprintParams, SearchParams
from matcher.peaks import audio2peaks
from matcher.repeats import find_repeats

OUT = Path(__file__).parent / "out"
SR = 8000
EPISODE_S = 1200.0
SHOW_SEED = 99


def _episode_audio(i: int, intro: np.ndarray, cues: list[np.ndarray]) -> np.ndarray:
    return make_episode(
        sr=SR,
        duration_s=EPISODE_S,
        seed=episode_seed(seed=SHOW_SEED, index=i),
        intro=intro,
        shared_cues=cues,
        cast_seed=SHOW_SEED,
    )


def build(n_episodes: int, params: FingerprintParams) -> FingerprintIndex:
    cache = OUT / f"search_scale_{n_episodes}_{params.digest()}.npz"
    intro = make_intro(sr=SR, seed=SHOW_SEED)
    cues = make_cues(sr=SR, seed=SHOW_SEED)
    if not cache.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        keys, frames, lens, nfr = [], [], [], []
        for i in range(n_episodes):
            peaks = audio2peaks(
                _episode_audio(i, intro, cues), params=params, peaks_per_s=params.ref_peaks_per_s
            )
            h = peaks2hashes(peaks, params=params)
            keys.append(h.key)
            frames.append(h.anchor_frame)
            lens.append(h.key.size)
            nfr.append(peaks.n_frames)
        np.savez(
            cache,
            keys=np.concatenate(keys),
            frames=np.concatenate(frames),
            lens=np.array(lens),
            nfr=np.array(nfr),
        )
    with np.load(cache) as data:  # each data[...] reads the array again: read them once
        all_keys, all_frames = data["keys"], data["frames"]
        lens, nfr = data["lens"], data["nfr"]
    episodes, hashes, start, at = [], [], 0, 0
    for i, (n, n_frames) in enumerate(zip(lens, nfr, strict=True)):
        episodes.append(
            Episode(
                id=f"S01E{i + 1:03d}",
                season=1,
                number=i + 1,
                title=None,
                duration_s=float(n_frames) * params.frame_s,
                checksum="synthetic",
                start_frame=start,
                n_frames=int(n_frames),
            )
        )
        hashes.append(Hashes(all_keys[at : at + n], all_frames[at : at + n]))
        start += int(n_frames)
        at += int(n)
    return FingerprintIndex.from_hashes(params=params, episodes=episodes, hashes=hashes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    params = FingerprintParams()
    started = time.process_time()
    index = build(args.episodes, params)
    print(
        f"index: {index.n_postings} postings, {index.duration_s / 3600:.1f} h, "
        f"{(index.positions.nbytes + index.offsets.nbytes) / (index.duration_s / 3600) / 1e6:.2f}"
        f" MB/h ({time.process_time() - started:.0f} s CPU)",
        flush=True,
    )
    started = time.process_time()
    index.set_repeats(find_repeats(index))
    print(
        f"repeats: {len(index.repeats)} spans ({time.process_time() - started:.0f} s CPU)",
        flush=True,
    )
    matcher = Matcher(index, search=SearchParams())
    intro = make_intro(sr=SR, seed=SHOW_SEED)
    cues = make_cues(sr=SR, seed=SHOW_SEED)
    rng = np.random.default_rng(11)
    music = make_episode(sr=SR, duration_s=60, seed=12345)
    picks = [
        (int(rng.integers(args.episodes)), float(rng.uniform(30, EPISODE_S - 50)))
        for _ in range(args.clips)
    ]
    audio: dict[int, np.ndarray] = {}
    lines: list[str] = []

    def run(name: str, fn: Callable[[np.ndarray], np.ndarray], dur_s: float = 10.0) -> None:
        ok, times = 0, []
        for e, start in picks:
            if e not in audio:
                audio[e] = _episode_audio(e, intro, cues)
            clip = fn(audio[e][round(start * SR) : round((start + dur_s) * SR)])
            t = time.process_time()
            r = matcher.identify(clip.astype(np.float32))
            times.append(time.process_time() - t)
            ok += (
                r.status == "match"
                and r.best is not None
                and r.best.episode == index.episodes[e].id
                and abs(r.best.offset_s - start) <= 1.0
            )
        ms = np.array(times) * 1000
        lines.append(
            f"| {name} | {ok}/{len(picks)} | {np.median(ms):.0f} | {np.percentile(ms, 95):.0f} |"
        )
        print(lines[-1], flush=True)

    def null(name: str, make: Callable[[int, float], np.ndarray]) -> None:
        statuses, times = [], []
        for i in range(3 * args.clips):
            clip = make(i, float(rng.choice([3.0, 5.0, 10.0])))
            t = time.process_time()
            statuses.append(matcher.identify(clip.astype(np.float32)).status)
            times.append(time.process_time() - t)
        ms = np.array(times) * 1000
        lines.append(
            f"| {name} | match {statuses.count('match')}/{len(statuses)}, ambiguous "
            f"{statuses.count('ambiguous')} | {np.median(ms):.0f} | "
            f"{np.percentile(ms, 95):.0f} |"
        )
        print(lines[-1], flush=True)

    only = set(filter(None, args.only.split(",")))

    def want(name: str) -> bool:
        return not only or name in only

    if want("clean"):
        run("clean 10 s", lambda y: y)
        run("clean 5 s", lambda y: y, 5.0)
        run("clean 3 s", lambda y: y, 3.0)
    if want("speed"):
        for s in (0.8, 1.3, 1.5):
            run(f"speed {s} (10 s)", lambda y, s=s: change_speed(y, factor=s), 10.0 * s)
        run("speed 1.25, 5 s", lambda y: change_speed(y, factor=1.25), 6.25)
    if want("music"):
        for snr in (10, 5, 0):
            run(
                f"music {snr} dB",
                lambda y, snr=snr: mix(y, music[int(rng.integers(0, 30 * SR)) :], snr_db=snr),
            )
        run(
            "music 5 dB, 5 s",
            lambda y: mix(y, music[int(rng.integers(0, 30 * SR)) :], snr_db=5),
            5.0,
        )
    if want("phone"):
        run("phone re-recording", lambda y: phone_recording(y, sr=SR, rng=rng))
    if want("tempo"):
        run("tempo 0.88", lambda y: librosa.effects.time_stretch(y, rate=0.88))
        run("tempo 1.2", lambda y: librosa.effects.time_stretch(y, rate=1.2), 12.0)
    if want("pitch"):
        run("pitch +2 st", lambda y: librosa.effects.pitch_shift(y, sr=SR, n_steps=2))
        run("pitch -3 st", lambda y: librosa.effects.pitch_shift(y, sr=SR, n_steps=-3))
    if want("null"):
        null(
            "null: dialogue of other casts",
            lambda i, d: make_dialogue(sr=SR, duration_s=d, seed=880_000 + i),
        )
        null(
            "null: whole scenes of other shows (synthetic music)",
            lambda i, d: make_episode(sr=SR, duration_s=d, seed=777_000 + i, cast_seed=1000 + i),
        )
    OUT.mkdir(parents=True, exist_ok=True)
    header = ["| clips | right (episode, ±1 s) | CPU p50 ms | CPU p95 ms |", "|---|---|---|---|"]
    (OUT / "search_scale.md").write_text("\n".join(header + lines) + "\n")


if __name__ == "__main__":
    main()
