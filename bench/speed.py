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

This module measures; the media and indexes it measures on are made by bench/speed_fixtures.py,
and bench/speed_report.py turns the results into the verdicts and the section.
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
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.common import loadavg, pct, timed
from bench.speed_fixtures import (
    CLIP_DURATIONS_S,
    OUT,
    PROFILES,
    Clip,
    Profile,
    make_big_index,
    make_media,
    subset,
)
from bench.speed_report import markdown, verdicts

SECTION = "## Speed and memory"

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


def machine() -> dict[str, Any]:
    import scipy

    return {
        **common.machine(),
        "scipy": scipy.__version__,
        "threads_env": {v: os.environ.get(v) for v in _THREAD_VARS[:3]},
    }


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
    log = common.progress_log(started)

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
