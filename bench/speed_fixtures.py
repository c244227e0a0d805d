"""What bench.speed measures on: the episode and clip media of scale (a), and the 100-hour index of
scale (b) (a real subset plus synthesised postings), all cached under bench/out/.

Also the clip type and clip recipe bench.peers shares. Nothing here is timed for the report
except what the report says about making the fixtures (generation and fingerprint time per
episode, to extrapolate an all-real 100-hour build).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import timed

OUT = Path(__file__).parent / "out"

# Synthetic episodes are generated at the matcher's rate (cheap), then encoded like real files.
SEED = 2
SHOW = "Speed Show"
EPISODE_ENCODE = ("-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2")
CLIP_ENCODE = ("-c:a", "aac", "-b:a", "128k", "-ar", "44100", "-ac", "2")
CLIP_DURATIONS_S = (3.0, 5.0, 10.0)
# Half the clips are played at a changed speed (resample-style), as reposted clips often are.
SPEED_RANGE = (0.8, 1.5)


@dataclass(frozen=True)
class Profile:
    name: str
    episodes: int  # media files of scale (a)
    episode_s: float
    extra_real: int  # more real-fingerprint episodes for scale (b), made in memory
    clips_per_duration: int
    big_clips_per_duration: int  # of those, queried against the 100-hour index
    serve_clips_per_duration: int  # of those, answered by the serving-memory process
    repeats: int  # timed passes over every clip
    build_repeats: int


PROFILES = {
    "full": Profile("full", 6, 1200.0, 12, 12, 12, 3, 2, 2),
    "quick": Profile("quick", 3, 1200.0, 3, 6, 4, 2, 1, 1),
}


@dataclass(frozen=True)
class Clip:
    path: str
    episode: str  # e.g. S01E02
    start_s: float  # episode time at the clip's first sample
    duration_s: float  # clip length as heard (after the speed change)
    speed: float


def episode_id(index: int) -> str:
    return f"S01E{index + 1:02d}"


def make_media(profile: Profile, *, log: Callable[[str], None]) -> tuple[Path, list[Clip]]:
    """Episode files and clip files for scale (a), reused when already made."""
    from bot.synth.degrade import change_speed
    from bot.synth.encode import TINY_VIDEO, encode
    from bot.synth.episodes import make_catalogue
    from matcher.params import FingerprintParams

    sr = FingerprintParams().sr
    root = OUT / f"speed-media-{profile.name}"
    recipe = {
        "version": 1,
        "seed": SEED,
        "episodes": profile.episodes,
        "episode_s": profile.episode_s,
        "clips": profile.clips_per_duration,
        "durations": CLIP_DURATIONS_S,
        "episode_encode": EPISODE_ENCODE,
        "clip_encode": CLIP_ENCODE,
    }
    manifest = root / "media.json"
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        if saved.get("recipe") == json.loads(json.dumps(recipe)):
            return root / "episodes", [Clip(**c) for c in saved["clips"]]
    shutil.rmtree(root, ignore_errors=True)
    show_dir = root / "episodes" / SHOW / "Season 01"
    clip_dir = root / "clips"
    show_dir.mkdir(parents=True)
    clip_dir.mkdir(parents=True)
    log(f"making {profile.episodes} episode files of {profile.episode_s / 60:.0f} min (cached)")
    episodes = make_catalogue(
        sr=sr, n_episodes=profile.episodes, duration_s=profile.episode_s, seed=SEED
    )
    for i, y in enumerate(episodes):
        path = show_dir / f"{SHOW} - {episode_id(i)}.mp4"
        encode(path, y, sr=sr, audio_args=EPISODE_ENCODE, video=TINY_VIDEO)
    rng = np.random.default_rng(SEED)
    clips: list[Clip] = []
    for duration_s in CLIP_DURATIONS_S:
        for k in range(profile.clips_per_duration):
            ep = int(rng.integers(len(episodes)))
            speed = 1.0 if k % 2 == 0 else float(rng.uniform(*SPEED_RANGE))
            source_s = duration_s * speed
            start_s = float(rng.uniform(20.0, profile.episode_s - source_s - 1.0))
            a = round(start_s * sr)
            piece = episodes[ep][a : a + round(source_s * sr)]
            if speed != 1.0:
                piece = change_speed(piece, factor=speed)
            path = clip_dir / f"clip-{duration_s:g}s-{k:02d}.mp4"
            encode(path, piece, sr=sr, audio_args=CLIP_ENCODE, video=TINY_VIDEO)
            clips.append(Clip(str(path), episode_id(ep), start_s, duration_s, speed))
    manifest.write_text(json.dumps({"recipe": recipe, "clips": [asdict(c) for c in clips]}))
    return root / "episodes", clips


def _real_subset(
    index_dir: Path, profile: Profile, *, extra: int, log: Callable[[str], None]
) -> tuple[list[Any], list[Any], dict[str, float]]:
    """Real fingerprints: the built episodes of (a) (from its build cache) and `extra` more
    episodes of the same show generated and fingerprinted in memory (timed, to extrapolate)."""
    from bot.synth.episodes import episode_seed, make_episode
    from bot.synth.music import make_cues, make_intro
    from matcher.hashes import Hashes, peaks2hashes
    from matcher.params import FingerprintParams
    from matcher.peaks import audio2peaks
    from matcher.store import CACHE_DIR, read_manifest

    params = FingerprintParams()
    manifest = read_manifest(index_dir)
    episodes, hashes = [], []
    for e in manifest["episodes"]:
        cached = next((index_dir / CACHE_DIR).glob(f"{e['checksum']}-*.npz"))
        with np.load(cached) as data:
            hashes.append(Hashes(key=data["key"], anchor_frame=data["anchor_frame"]))
        episodes.append((e["id"], float(e["duration_s"]), int(e["n_frames"])))
    intro = make_intro(sr=params.sr, seed=SEED)
    cues = make_cues(sr=params.sr, seed=SEED)
    gen_s, fp_s = [], []
    for i in range(profile.episodes, profile.episodes + extra):
        with timed() as tg:
            y = make_episode(
                sr=params.sr,
                duration_s=profile.episode_s,
                seed=episode_seed(seed=SEED, index=i),
                intro=intro,
                shared_cues=cues,
                cast_seed=SEED,
            )
        with timed() as tf:
            peaks = audio2peaks(y, params=params, peaks_per_s=params.ref_peaks_per_s)
            hashes.append(peaks2hashes(peaks, params=params))
        gen_s.append(tg["cpu_s"])
        fp_s.append(tf["cpu_s"])
        episodes.append((episode_id(i), y.size / params.sr, peaks.n_frames))
    timing = {
        "synth_s_per_episode": float(np.median(gen_s)) if gen_s else float("nan"),
        "fingerprint_s_per_episode": float(np.median(fp_s)) if fp_s else float("nan"),
        "intro_frames": float(round(intro.size / params.sr / params.frame_s)),
    }
    log(
        f"real subset: {len(episodes)} episodes; generating one took "
        f"{timing['synth_s_per_episode']:.2f} s CPU, fingerprinting it "
        f"{timing['fingerprint_s_per_episode']:.2f} s CPU"
    )
    return episodes, hashes, timing


def make_big_index(
    small_index: Path,
    profile: Profile,
    *,
    hours: float,
    all_real: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Write the `hours`-hour index (real subset + synthesised postings) to bench/out."""
    from matcher.hashes import Hashes
    from matcher.index import Episode, FingerprintIndex, build_csr
    from matcher.params import FingerprintParams
    from matcher.repeats import find_repeats
    from matcher.store import index_size_bytes, write_index

    params = FingerprintParams()
    n_total = max(profile.episodes, round(hours * 3600 / profile.episode_s))
    extra = n_total - profile.episodes if all_real else profile.extra_real
    real, real_hashes, timing = _real_subset(small_index, profile, extra=extra, log=log)
    intro_frames = int(timing["intro_frames"])
    # Statistics of the real subset, outside the shared intro.
    body_keys = np.concatenate([h.key[h.anchor_frame >= intro_frames] for h in real_hashes])
    body_frames = sum(n - intro_frames for _, _, n in real)
    per_frame = body_keys.size / body_frames
    intro = real_hashes[0]
    intro_mask = intro.anchor_frame < intro_frames
    intro_keys, intro_anchor = intro.key[intro_mask], intro.anchor_frame[intro_mask]
    counts = np.bincount(body_keys, minlength=1 << params.key_bits).astype(np.float64)
    # Light smoothing: a subset has not seen every key a big catalogue would.
    weights = counts + 0.05 * counts.sum() / counts.size
    cdf = np.cumsum(weights / weights.sum())
    rng = np.random.default_rng(SEED)
    episodes: list[Episode] = []
    hashes: list[Hashes] = []
    start = 0
    with timed() as t_synth:
        for i in range(n_total):
            if i < len(real):
                code, duration_s, n_frames = real[i]
                h = real_hashes[i]
            else:
                code = f"S{2 + (i // 100):02d}E{i % 100 + 1:02d}"
                n_frames = real[i % len(real)][2]
                duration_s = real[i % len(real)][1]
                n = int(rng.poisson(per_frame * (n_frames - intro_frames)))
                keys = np.searchsorted(cdf, rng.random(n)).astype(np.uint32)
                anchor = np.sort(rng.integers(intro_frames, n_frames, n)).astype(np.int32)
                h = Hashes(
                    key=np.concatenate([intro_keys, np.minimum(keys, counts.size - 1)]),
                    anchor_frame=np.concatenate([intro_anchor, anchor]),
                )
            season, number = int(code[1:3]), int(code[4:])
            episodes.append(Episode(code, season, number, None, duration_s, "", start, n_frames))
            hashes.append(h)
            start += n_frames
    with timed() as t_csr:
        offsets, positions = build_csr(params=params, episodes=episodes, hashes=hashes)
    # Repeated spans found as a build finds them, and timed.
    with timed() as t_rep:
        repeats = find_repeats(
            FingerprintIndex(params=params, episodes=episodes, offsets=offsets, positions=positions)
        )
    repeats_s = t_rep["cpu_s"]
    big_dir = OUT / f"speed-index-{hours:g}h{'-all-real' if all_real else ''}"
    shutil.rmtree(big_dir, ignore_errors=True)
    write_index(
        big_dir,
        params=params,
        episodes=episodes,
        offsets=offsets,
        positions=positions,
        repeats=repeats,
    )
    size = index_size_bytes(big_dir)
    audio_h = sum(e.duration_s for e in episodes) / 3600
    per_episode = timing["synth_s_per_episode"] + timing["fingerprint_s_per_episode"]
    log(f"{audio_h:.0f} h index: {positions.size:,} postings, {size / 1e6:.1f} MB")
    return {
        "index_dir": str(big_dir),
        "audio_hours": audio_h,
        "episodes": len(episodes),
        "real_episodes": len(real),
        "synthesised_episodes": len(episodes) - len(real),
        "n_postings": int(positions.size),
        "index_bytes": size,
        "index_mb_per_hour": size / 1e6 / audio_h,
        "real_hashes_per_frame": per_frame,
        "real_distinct_keys": int(np.count_nonzero(counts)),
        "synthesis_cpu_s": t_synth["cpu_s"],
        "csr_cpu_s": t_csr["cpu_s"],
        "find_repeats_cpu_s": repeats_s,
        "synth_s_per_episode": timing["synth_s_per_episode"],
        "fingerprint_s_per_episode": timing["fingerprint_s_per_episode"],
        "all_real_would_take_s": per_episode * len(episodes),
        "max_postings_per_key": int(np.max(np.diff(offsets.astype(np.int64)))),
    }


def subset(clips: Sequence[Clip], per_duration: int) -> list[Clip]:
    """The first `per_duration` clips of each duration."""
    out: list[Clip] = []
    for d in CLIP_DURATIONS_S:
        out += [c for c in clips if c.duration_s == d][:per_duration]
    return out
