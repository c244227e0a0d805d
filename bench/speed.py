"""Speed and memory benchmark (issue 2): build throughput, index size, query latency, serving RSS.

    python -m bench.speed            # `make bench`: full run, ~10 minutes the first time
    python -m bench.speed --quick    # smaller catalogue and fewer clips, ~3-4 minutes

Everything runs on ONE core: the script re-executes itself pinned to CPU 0 with every BLAS/OpenMP
pool at one thread (ffmpeg inherits the pinning), at `nice -5` when allowed. Two scales:

(a) a real small catalogue: `bot.synth` episodes written as real media files (mp4: AAC 48 kHz
    stereo and a tiny H.264 track, like a ripped episode) and built with `build_index`, decoding
    included;
(b) a 100-hour index (300 x 20 min). Generating and fingerprinting 100 h of synthetic audio takes
    longer than the bench may (the time it would take is measured and reported), so (b) holds the
    real fingerprints of a subset (the episodes of (a) plus more generated in memory) and, for the
    rest, postings synthesised from the subset's statistics: the shared intro's hashes copied
    verbatim into every episode (as every real episode opens with the same theme), the rest keys
    drawn from the subset's key histogram (lightly smoothed) at the subset's hashes per frame,
    at uniform anchor positions. Queries are clips of real-subset episodes, so they have a true
    match among 100 hours of competing postings.

Query latency is end to end: ffmpeg decodes an mp4/AAC clip (44.1 kHz stereo, as downloaded
from a platform), then `Matcher.identify` (fingerprint + search + decision), and separately
`Matcher.identify_stages` run to its last answer. Serving memory is the peak RSS of a fresh
process that opens the 100-hour index with `load_index(mmap=True)` and answers every clip.
Machines are shared: wall times carry the load, so CPU times (process + ffmpeg children) are
reported beside them, and the load average is recorded. Results: bench/out/speed.json and the
"Speed and memory" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.common import cpu_s, loadavg, pct

OUT = Path(__file__).parent / "out"
SECTION = "## Speed and memory"

# Synthetic episodes are generated at the matcher's rate (cheap), then encoded like real files.
SEED = 2
SHOW = "Speed Show"
EPISODE_ENCODE = ("-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2")
CLIP_ENCODE = ("-c:a", "aac", "-b:a", "128k", "-ar", "44100", "-ac", "2")
CLIP_DURATIONS_S = (3.0, 5.0, 10.0)
# Half the clips are played at a changed speed (resample-style), as reposted clips often are.
SPEED_RANGE = (0.8, 1.5)
# "on" is the brief's SearchParams(min_speed=0.75, max_speed=1.6) with every other default;
# "off" searches only the clip as it is: speed 1, and the tempo and pitch lines (where the
# search has them) switched off too.
SPEED_ON: dict[str, float] = {"min_speed": 0.75, "max_speed": 1.6}
SPEED_OFF: dict[str, float] = {
    "min_speed": 1.0,
    "max_speed": 1.0,
    "min_tempo": 1.0,
    "max_tempo": 1.0,
    "max_pitch_semitones": 0.0,
}
_PIN_ENV = "CITYWOK_BENCH_PINNED"
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

BARS = {
    "index_mb_per_hour": ("<=", 1.0),
    "clip10_p50_ms": ("<=", 250.0),
    "clip10_p95_ms": ("<=", 500.0),
    "build_x_realtime_per_core": (">=", 300.0),
    "serving_rss_mb": ("<=", 400.0),
}


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


# ---------------------------------------------------------------------------------------------
# Process setup and measurement helpers


def _pin_and_reexec(cpu: int) -> None:
    """Re-run this module on one core with single-threaded numerical libraries."""
    env = dict(os.environ)
    env[_PIN_ENV] = str(cpu)
    for var in _THREAD_VARS:
        env[var] = "1"
    os.sched_setaffinity(0, {cpu})
    with contextlib.suppress(PermissionError, OSError):
        os.nice(-5)
    os.execve(sys.executable, [sys.executable, "-m", "bench.speed", *sys.argv[1:]], env)


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall and CPU seconds of the block, filled in when it ends."""
    out: dict[str, float] = {}
    wall, cpu = time.perf_counter(), cpu_s()
    try:
        yield out
    finally:
        out["wall_s"] = time.perf_counter() - wall
        out["cpu_s"] = cpu_s() - cpu


def machine() -> dict[str, Any]:
    import scipy

    return {
        **common.machine(),
        "scipy": scipy.__version__,
        "threads_env": {v: os.environ.get(v) for v in _THREAD_VARS[:3]},
    }


# ---------------------------------------------------------------------------------------------
# Media: episode files and query clips, cached under bench/out/speed-media-<profile>/


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


# ---------------------------------------------------------------------------------------------
# Scale (a): build from media files


def bench_build(media: Path, profile: Profile, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Build the small index from its files, timed; then time each stage on one episode."""
    from matcher.build import build_index, find_media
    from matcher.decode import decode_file
    from matcher.hashes import peaks2hashes
    from matcher.params import FingerprintParams
    from matcher.peaks import audio2peaks
    from matcher.store import index_size_bytes

    params = FingerprintParams()
    runs = []
    index_dir = OUT / f"speed-index-{profile.name}"
    for r in range(profile.build_repeats):
        shutil.rmtree(index_dir, ignore_errors=True)
        with timed() as t:
            report = build_index([media], index_dir=index_dir, params=params, workers=1)
        runs.append(t)
        log(
            f"build {r + 1}: {report.duration_s / 3600:.2f} h of audio in {t['wall_s']:.1f} s "
            f"wall, {t['cpu_s']:.1f} s CPU"
        )
    audio_s = report.duration_s
    size = index_size_bytes(index_dir)
    # Stage breakdown on the first episode (same calls as build.fingerprint_file).
    first = find_media([media])[0]
    stages: dict[str, list[float]] = {"decode": [], "peaks": [], "hashes": []}
    for _ in range(max(1, profile.build_repeats)):
        with timed() as td:
            audio = decode_file(first, sr=params.sr, max_duration_s=6 * 3600.0, timeout_s=600.0)
        with timed() as tp:
            peaks = audio2peaks(audio.samples, params=params, peaks_per_s=params.ref_peaks_per_s)
        with timed() as th:
            hashes = peaks2hashes(peaks, params=params)
        for name, t in (("decode", td), ("peaks", tp), ("hashes", th)):
            stages[name].append(t["cpu_s"])
    per_episode_s = audio.duration_s
    wall = float(np.median([t["wall_s"] for t in runs]))
    cpu = float(np.median([t["cpu_s"] for t in runs]))
    return {
        "episodes": report.episodes,
        "audio_hours": audio_s / 3600,
        "build_wall_s": wall,
        "build_cpu_s": cpu,
        "x_realtime_wall": audio_s / wall,
        "x_realtime_cpu": audio_s / cpu,
        "index_bytes": size,
        "index_mb_per_hour": size / 1e6 / (audio_s / 3600),
        "n_postings": report.n_postings,
        "hashes_per_hour": len(hashes) / (per_episode_s / 3600),
        "stage_s_per_episode": {k: float(np.median(v)) for k, v in stages.items()},
        "stage_episode_s": per_episode_s,
        "index_dir": str(index_dir),
        "loadavg": loadavg(),
    }


# ---------------------------------------------------------------------------------------------
# Scale (b): 100 hours, real subset + synthesised remainder


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


# ---------------------------------------------------------------------------------------------
# Queries


def _matcher(index: Any, speed_search: bool) -> Any:
    from matcher.identify import Matcher
    from matcher.params import SearchParams

    known = {f.name for f in dataclasses.fields(SearchParams)}
    wanted = SPEED_ON if speed_search else SPEED_OFF
    search = SearchParams(**{k: v for k, v in wanted.items() if k in known})  # type: ignore[arg-type]
    return Matcher(index, search=search)


def _correct(result: Any, clip: Clip) -> bool:
    best = getattr(result, "best", None)
    return (
        result.status == "match"
        and best is not None
        and best.episode == clip.episode
        and abs(best.offset_s - clip.start_s) <= 1.0
    )


def query_once(matcher: Any, clip: Clip) -> dict[str, Any]:
    """One clip, end to end, through `identify` and through `identify_stages`."""
    from matcher.decode import decode_file

    sr = matcher.sr
    row: dict[str, Any] = {"clip": Path(clip.path).name, "duration_s": clip.duration_s}
    row["speed"] = clip.speed
    with timed() as t_all:
        with timed() as t_dec:
            audio = decode_file(clip.path, sr=sr, max_duration_s=60.0, timeout_s=60.0)
        with timed() as t_id:
            result = matcher.identify(audio.samples)
    row.update(
        decode_ms=t_dec["wall_s"] * 1e3,
        identify_ms=t_id["wall_s"] * 1e3,
        total_ms=t_all["wall_s"] * 1e3,
        total_cpu_ms=t_all["cpu_s"] * 1e3,
        status=result.status,
        correct=_correct(result, clip),
    )
    with timed() as t_p:
        matcher.peaks(audio.samples)
    row["peaks_ms"] = t_p["wall_s"] * 1e3
    started = time.perf_counter()
    first_ms, n_stages, last = float("nan"), 0, None
    audio = decode_file(clip.path, sr=sr, max_duration_s=60.0, timeout_s=60.0)
    for result in matcher.identify_stages(audio.samples):
        last = result
        n_stages += 1
        if n_stages == 1:
            first_ms = (time.perf_counter() - started) * 1e3
    row.update(
        stages_first_ms=first_ms,
        stages_total_ms=(time.perf_counter() - started) * 1e3,
        stages_run=n_stages,
        stages_correct=last is not None and _correct(last, clip),
    )
    return row


def subset(clips: Sequence[Clip], per_duration: int) -> list[Clip]:
    """The first `per_duration` clips of each duration."""
    out: list[Clip] = []
    for d in CLIP_DURATIONS_S:
        out += [c for c in clips if c.duration_s == d][:per_duration]
    return out


def bench_queries(
    index: Any, clips: Sequence[Clip], *, repeats: int, log: Callable[[str], None]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for speed_search in (False, True):
        matcher = _matcher(index, speed_search)
        query_once(matcher, clips[-1])  # warm-up: imports, caches, first page faults
        rows = [query_once(matcher, clip) for _ in range(repeats) for clip in clips]
        mode = "speed_on" if speed_search else "speed_off"
        out[mode] = {"rows": rows, "summary": summarise(rows)}
        for d, s in out[mode]["summary"].items():
            log(
                f"  {mode} {d} s: identify p50 {s['total_p50_ms']:.0f} ms, p95 "
                f"{s['total_p95_ms']:.0f} ms; stages p50 {s['stages_p50_ms']:.0f} ms; "
                f"correct {s['correct']}/{s['n']}"
            )
    return out


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for d in CLIP_DURATIONS_S:
        sel = [r for r in rows if r["duration_s"] == d]
        if not sel:
            continue

        def col(name: str, sel: list[dict[str, Any]] = sel) -> list[float]:
            return [float(r[name]) for r in sel]

        summary[f"{d:g}"] = {
            "n": len(sel),
            "total_p50_ms": pct(col("total_ms"), 50),
            "total_p95_ms": pct(col("total_ms"), 95),
            "total_cpu_p50_ms": pct(col("total_cpu_ms"), 50),
            "total_cpu_p95_ms": pct(col("total_cpu_ms"), 95),
            "decode_p50_ms": pct(col("decode_ms"), 50),
            "peaks_p50_ms": pct(col("peaks_ms"), 50),
            "search_p50_ms": pct([r["identify_ms"] - r["peaks_ms"] for r in sel], 50),
            "stages_first_p50_ms": pct(col("stages_first_ms"), 50),
            "stages_p50_ms": pct(col("stages_total_ms"), 50),
            "stages_p95_ms": pct(col("stages_total_ms"), 95),
            "correct": sum(bool(r["correct"]) for r in sel),
            "stages_correct": sum(bool(r["stages_correct"]) for r in sel),
        }
    return summary


# ---------------------------------------------------------------------------------------------
# Serving memory: a fresh process


def serve(index_dir: Path, clips_json: Path, *, speed_search: bool) -> dict[str, Any]:
    """What a serving process holds: open the index (mmap), answer every clip, report max RSS."""
    from matcher.store import load_index

    def rss_mb(field: str = "VmRSS:") -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        return float("nan")

    before = rss_mb()
    index = load_index(index_dir, mmap=True)
    after_load = rss_mb()
    matcher = _matcher(index, speed_search)
    clips = [Clip(**c) for c in json.loads(clips_json.read_text())]
    for clip in clips:
        query_once(matcher, clip)
    return {
        "rss_after_imports_mb": before,
        "rss_after_load_mb": after_load,
        "rss_end_mb": rss_mb(),
        "vm_hwm_mb": rss_mb("VmHWM:"),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "queries": len(clips),
    }


def bench_serving(index_dir: Path, clips: Sequence[Clip]) -> dict[str, Any]:
    clips_json = OUT / "speed-clips.json"
    clips_json.write_text(json.dumps([asdict(c) for c in clips]))
    out = {}
    for speed_search in (False, True):
        cmd = [sys.executable, "-m", "bench.speed", "--serve", str(index_dir)]
        cmd += ["--clips-json", str(clips_json), *(["--speed-search"] if speed_search else [])]
        # Linux carries a process's peak RSS across exec: a child forked from this (large)
        # process would report this process's RSS as its own ru_maxrss. A shell in between,
        # which forks the server from its own small image, gives the server a clean count.
        shell = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
        proc = subprocess.run([*shell, *cmd], capture_output=True, text=True, check=True)
        out["speed_on" if speed_search else "speed_off"] = json.loads(proc.stdout)
    return out


# ---------------------------------------------------------------------------------------------
# Report


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pass/fail per bar. Latency bars are judged on wall time (what a user waits); the CPU
    time of the same queries is given beside, since the machine is shared."""
    big = results["scale_b"]
    q = big["queries"]

    def worst(key: str) -> float:
        return max(q[m]["summary"]["10"][key] for m in q)

    values = {
        "index_mb_per_hour": (big["index"]["index_mb_per_hour"], None),
        "clip10_p50_ms": (worst("total_p50_ms"), worst("total_cpu_p50_ms")),
        "clip10_p95_ms": (worst("total_p95_ms"), worst("total_cpu_p95_ms")),
        "build_x_realtime_per_core": (
            results["scale_a"]["build"]["x_realtime_cpu"],
            results["scale_a"]["build"]["x_realtime_wall"],
        ),
        "serving_rss_mb": (max(s["maxrss_mb"] for s in big["serving"].values()), None),
    }
    out = {}
    for name, (op, bar) in BARS.items():
        value, other = values[name]
        out[name] = {
            "value": value,
            "other": other,
            "bar": f"{op} {bar:g}",
            "pass": bool(value <= bar if op == "<=" else value >= bar),
            "other_pass": None
            if other is None
            else bool(other <= bar if op == "<=" else other >= bar),
        }
    return out


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    a, b = results["scale_a"], results["scale_b"]
    v = results["verdicts"]
    lines = [
        f"Reproduce: `{results['command']}` (or `make bench`; `--quick` for a smaller run). "
        f"Raw numbers: `bench/out/speed.json`. Run {results['started_utc']} "
        f"({results['profile']} profile, {results['elapsed_s'] / 60:.1f} min).",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus']} cores, {m['ram_gb']} GB RAM; measured on one core "
        f"(pinned to CPU {m['pinned_to_cpu']}, BLAS/OpenMP threads = 1, nice {m['niceness']}). "
        f"The machine was shared: load average {results['loadavg_start']} at the start, "
        f"{results['loadavg_end']} at the end, so wall times are inflated; CPU times "
        "(process + ffmpeg children) are given beside them.",
        "",
        "| bar | measured | target | verdict |",
        "|---|---|---|---|",
    ]
    labels = {
        "index_mb_per_hour": ("index size, 100 h index", "MB per hour", ""),
        "clip10_p50_ms": (
            "10 s clip end to end p50, 100 h, worst of speed search on/off",
            "ms wall",
            "CPU {:.0f} ms",
        ),
        "clip10_p95_ms": (
            "10 s clip end to end p95, 100 h, worst of speed search on/off",
            "ms wall",
            "CPU {:.0f} ms",
        ),
        "build_x_realtime_per_core": (
            "build throughput per core, decoding included",
            "x realtime (CPU time)",
            "{:.0f}x by wall clock",
        ),
        "serving_rss_mb": ("serving peak RSS, 100 h index, mmap", "MB", ""),
    }
    for name, verdict in v.items():
        label, unit, other_fmt = labels[name]
        measured = f"{verdict['value']:.3g} {unit}"
        mark = "pass" if verdict["pass"] else "**FAIL**"
        if verdict["other"] is not None:
            measured += f" ({other_fmt.format(verdict['other'])})"
            if verdict["other_pass"] != verdict["pass"]:
                mark += f" ({'pass' if verdict['other_pass'] else 'fail'} by the other measure)"
        lines.append(f"| {label} | {measured} | {verdict['bar']} | {mark} |")
    s10 = b["queries"]["speed_on"]["summary"]["10"]
    lines += [
        "",
        f"Where a 10 s clip's time goes (100 h, speed search on, p50): ffmpeg decode "
        f"{s10['decode_p50_ms']:.0f} ms, peaks {s10['peaks_p50_ms']:.0f} ms, search and decision "
        f"{s10['search_p50_ms']:.0f} ms (wall); {s10['total_cpu_p50_ms']:.0f} ms of CPU in all. "
        "Where wall and CPU verdicts differ, the gap is the shared machine's load; on an idle "
        "core the wall time of one query approaches its CPU time.",
    ]
    build = a["build"]
    st = build["stage_s_per_episode"]
    ep_min = build["stage_episode_s"] / 60
    lines += [
        "",
        f"**Build, scale (a)**: {build['episodes']} synthetic episodes as mp4 (AAC 48 kHz stereo "
        f"128 kb/s + tiny H.264), {build['audio_hours']:.2f} h, `build_index(workers=1)`: "
        f"{build['build_wall_s']:.1f} s wall / {build['build_cpu_s']:.1f} s CPU = "
        f"**{build['x_realtime_cpu']:.0f}x realtime per core** (CPU), "
        f"{build['x_realtime_wall']:.0f}x by wall clock. Per {ep_min:.0f}-min episode: decode "
        f"{st['decode']:.2f} s (ffmpeg CPU), peaks {st['peaks']:.2f} s, hashes "
        f"{st['hashes']:.3f} s. Index {build['index_bytes'] / 1e6:.2f} MB = "
        f"{build['index_mb_per_hour']:.2f} MB/h (the 2 MB CSR offsets table is fixed, so small "
        f"catalogues cost more per hour); {build['hashes_per_hour']:,.0f} postings per hour.",
        "",
    ]
    bi = b["index"]
    lines += [
        f"**Scale (b)**: {bi['audio_hours']:.0f} h, {bi['episodes']} episodes: "
        f"{bi['real_episodes']} with real fingerprints, {bi['synthesised_episodes']} with "
        f"synthesised postings (shared intro copied, other keys drawn from the real subset's "
        f"histogram at its {bi['real_hashes_per_frame']:.2f} hashes per frame). Generating and "
        f"fingerprinting all {bi['episodes']} episodes for real would take "
        f"~{bi['all_real_would_take_s'] / 60:.0f} min of CPU "
        f"({bi['synth_s_per_episode']:.2f} s synth + {bi['fingerprint_s_per_episode']:.2f} s "
        f"fingerprint per episode). {bi['n_postings']:,} postings, "
        f"{bi['index_bytes'] / 1e6:.1f} MB; longest posting list {bi['max_postings_per_key']:,}.",
        "",
        "**Query latency** (ms, end to end: ffmpeg decode of an mp4/AAC clip + fingerprint + "
        "search + decision; half the clips are at a random speed in "
        f"{SPEED_RANGE[0]}-{SPEED_RANGE[1]}x). 'stages' is `identify_stages` run to its "
        "last answer; 'first' is its first answer. 'found' counts right episode and offset "
        "within 1 s.",
        "",
        "| index | speed search | clip | p50 | p95 | CPU p50 | decode | peaks | search+decide "
        "| stages first | stages p50 / p95 | found |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scale_name, scale in (("(a) small", a), ("(b) 100 h", b)):
        for mode, label in (("speed_off", "off"), ("speed_on", "0.75-1.6")):
            for d, s in scale["queries"][mode]["summary"].items():
                lines.append(
                    f"| {scale_name} | {label} | {d} s | {s['total_p50_ms']:.0f} | "
                    f"{s['total_p95_ms']:.0f} | {s['total_cpu_p50_ms']:.0f} | "
                    f"{s['decode_p50_ms']:.0f} | {s['peaks_p50_ms']:.0f} | "
                    f"{s['search_p50_ms']:.0f} | {s['stages_first_p50_ms']:.0f} | "
                    f"{s['stages_p50_ms']:.0f} / {s['stages_p95_ms']:.0f} | "
                    f"{s['correct']}/{s['n']} |"
                )
    lines += [
        "",
        "**Serving memory** (fresh process: imports, `load_index(mmap=True)`, every clip "
        "answered; ru_maxrss of the Python process, ffmpeg runs in its own):",
        "",
        "| index | speed search | after imports | after load | peak RSS (ru_maxrss) | VmHWM |",
        "|---|---|---|---|---|---|",
    ]
    for scale_name, scale in (("(a) small", a), ("(b) 100 h", b)):
        for mode, s in scale["serving"].items():
            lines.append(
                f"| {scale_name} | {mode.replace('_', ' ')} | {s['rss_after_imports_mb']:.0f} MB | "
                f"{s['rss_after_load_mb']:.0f} MB | {s['maxrss_mb']:.0f} MB | "
                f"{s['vm_hwm_mb']:.0f} MB |"
            )
    lines += synthesis_check(results)
    return "\n".join(lines) + "\n"


def synthesis_check(results: dict[str, Any]) -> list[str]:
    """Compare the synthesised 100-hour index with an all-real one, if one was measured."""
    path = OUT / "speed-all-real.json"
    if results["scale_b"]["index"]["synthesised_episodes"] == 0 or not path.is_file():
        return []
    real = json.loads(path.read_text())
    rows = []
    for label, r in (("synthesised remainder (this run)", results), ("all real", real)):
        bi, q = r["scale_b"]["index"], r["scale_b"]["queries"]
        s_on, s_off = q["speed_on"]["summary"]["10"], q["speed_off"]["summary"]["10"]
        rss = max(x["maxrss_mb"] for x in r["scale_b"]["serving"].values())
        rows.append(
            f"| {label} ({r['started_utc']}) | {bi['n_postings']:,} | "
            f"{bi['max_postings_per_key']:,} | {s_off['total_cpu_p50_ms']:.0f} | "
            f"{s_on['total_cpu_p50_ms']:.0f} / {s_on['total_cpu_p95_ms']:.0f} | "
            f"{s_on['correct']}/{s_on['n']} | {rss:.0f} MB |"
        )
    return [
        "",
        "**Check of the synthesis** (`python -m bench.speed --all-real --no-md --json "
        "bench/out/speed-all-real.json` fingerprints all 300 episodes): 10 s clips on the "
        "100-hour index, CPU ms (wall times of two runs on a shared machine do not compare).",
        "",
        "| 100 h index | postings | longest list | speed off p50 | speed on p50 / p95 "
        "| found (on) | serving RSS |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller catalogue, fewer clips")
    parser.add_argument("--hours", type=float, default=100.0, help="size of the big index")
    parser.add_argument(
        "--all-real",
        action="store_true",
        help="fingerprint every episode of the big index for real (slow; checks the synthesis)",
    )
    parser.add_argument("--cpu", type=int, default=0, help="the core to run on")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    parser.add_argument("--no-md", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--json", type=Path, default=OUT / "speed.json", help="results file")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clips-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--speed-search", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        print(json.dumps(serve(args.serve, args.clips_json, speed_search=args.speed_search)))
        return
    if not args.no_pin and _PIN_ENV not in os.environ:
        _pin_and_reexec(args.cpu)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {msg}", flush=True)

    from matcher.store import load_index

    profile = PROFILES["quick" if args.quick else "full"]
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join(
            ["python -m bench.speed"]
            + (["--quick"] if args.quick else [])
            + (["--all-real"] if args.all_real else [])
            + ([f"--hours {args.hours:g}"] if args.hours != 100.0 else [])
        ),
        "profile": profile.name,
        "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "loadavg_start": loadavg(),
    }
    log(f"machine: {results['machine']}; load {results['loadavg_start']}")
    media, clips = make_media(profile, log=log)
    log(f"{len(clips)} clips ready")
    big_clips = subset(clips, profile.big_clips_per_duration)
    serve_clips = subset(clips, profile.serve_clips_per_duration)
    build = bench_build(media, profile, log=log)
    small = load_index(Path(build["index_dir"]), mmap=True)
    log("queries, scale (a)")
    results["scale_a"] = {
        "build": build,
        "queries": bench_queries(small, clips, repeats=profile.repeats, log=log),
        "serving": bench_serving(Path(build["index_dir"]), serve_clips),
    }
    big_info = make_big_index(
        Path(build["index_dir"]), profile, hours=args.hours, all_real=args.all_real, log=log
    )
    big = load_index(Path(big_info["index_dir"]), mmap=True)
    log("queries, scale (b)")
    results["scale_b"] = {
        "index": big_info,
        "queries": bench_queries(big, big_clips, repeats=profile.repeats, log=log),
        "serving": bench_serving(Path(big_info["index_dir"]), serve_clips),
    }
    results["loadavg_end"] = loadavg()
    results["elapsed_s"] = time.perf_counter() - started
    results["verdicts"] = verdicts(results)
    args.json.write_text(json.dumps(results, indent=1, default=float))
    section = markdown(results)
    if not args.no_md:
        common.write_section(section, name="speed", heading=SECTION, placeholders=("## Speed",))
    print(section)


if __name__ == "__main__":
    main()
