"""CityWok side by side with audfprint (issue 13): per-clip time, build time, index size, memory.

    python -m bench.peers --audfprint-git /path/to/audfprint/.git      # or AUDFPRINT_GIT=...
    python -m bench.peers --audfprint-git ... --blocks 6 --clips 108 --profile large

audfprint (dpwe/audfprint, MIT) is a peer to measure against, never part of the product: this
script does not carry its code. It takes a git directory of audfprint that the caller fetched
(`--audfprint-git` or the `AUDFPRINT_GIT` environment variable), `git archive`s it into
bench/out/peers/audfprint-src at run time, and runs it in its own processes. audfprint needs
numpy, scipy, docopt, joblib and psutil, and an `ffmpeg` on PATH; the ffmpeg the matcher finds
(`matcher.ffmpeg.find_ffmpeg`, the imageio-ffmpeg binary if there is no other) is put on its PATH.

What is measured, all on ONE core (both systems' processes are pinned to the same CPU, BLAS and
OpenMP pools at one thread, niced):

* Catalogue: the episodes of `bench.corpus` (profile `large`: 39 x 22 min, ~14.3 h of
  espeak-ng dialogue over Debian-packaged game music, as mp4 with AAC and a tiny video track).
* Build: each system indexes the same files on one core, decoding included: CityWok with
  `build_index(workers=1)`, audfprint with `audfprint.py new` (ncores 1). Reported as x realtime
  (catalogue seconds per second of the build's wall time and of its CPU time) and index size on
  disk.
* Clips: `--clips` mp4 clips (AAC 44.1 kHz stereo and a tiny H.264 track, as a platform serves
  them) cut from random places of random episodes, a third each of 3, 5 and 10 s; half are
  resampled to a speed in 0.8-1.5x, as reposted clips often are.
* Per-clip time, in alternating blocks: each block starts a fresh process per system, which loads
  its index once, answers one warm-up clip untimed, then times every clip from file to answer:
  audfprint `Matcher.match_file` (its ffmpeg decode at 11.025 kHz, peaks, hashes, match) and
  CityWok `decode_file` + `Matcher.identify_stages` to its final answer, speed search on
  (`SearchParams()`: speed 0.75-1.6, tempo, pitch), which is what the bot does with a clip. The
  order of the two systems flips from one block to the next, so load that drifts during the run
  falls on both alike. `whole` is also timed: decode + `Matcher.identify` on the whole clip.
  The ratio is CityWok's p50 (p95) over audfprint's p50 (p95), all blocks pooled; the per-block
  ratios show how steady it is. Wall time is what a user waits; CPU time (process + ffmpeg
  children) is reported beside it because the machine is shared.
* Memory: each worker's peak RSS (ru_maxrss, the process that loaded the index and answered).

Results: bench/out/peers.json and the "Side by side with audfprint" section of bench/RESULTS.md,
written by bench/peers_report.py. The clips are bench/speed_fixtures.py's kind of clip.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.common import cpu_s, loadavg, pct
from bench.peers_report import markdown, summarise

# The same clips as bench.speed makes: durations, speed range, encoding as a platform serves.
from bench.speed_fixtures import CLIP_DURATIONS_S, CLIP_ENCODE, SPEED_RANGE, Clip

OUT = Path(__file__).parent / "out" / "peers"
SECTION = "## Side by side with audfprint"
SEED = 13
TINY_VIDEO = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# audfprint's own defaults for `match` (audfprint.py's docopt usage and setup_analyzer).
AUDFPRINT_MATCH_SHIFTS = 4


# ---------------------------------------------------------------------------------------------
# Helpers


def _ffmpeg() -> str:
    from matcher.ffmpeg import _bundled_ffmpeg, find_ffmpeg

    # The static imageio-ffmpeg build when there is one: a distribution's ffmpeg loads dozens of
    # shared libraries at every start (~40 ms here), which would be charged to audfprint's
    # per-clip time and make the ratio depend on which ffmpeg the machine happens to have.
    return _bundled_ffmpeg() or find_ffmpeg()


def _worker_env(cpu: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = "1"
    # audfprint calls `ffmpeg` by name: give it the one the matcher uses.
    bin_dir = OUT / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "ffmpeg"
    if link.is_symlink() and os.readlink(link) != _ffmpeg():
        link.unlink()
    if not link.exists():
        link.symlink_to(_ffmpeg())
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")]
    )
    return env


def _run_pinned(cmd: list[str], *, cpu: int, nice: int) -> subprocess.CompletedProcess[str]:
    """Run a child on one core at `nice`, through a shell so that its ru_maxrss is its own
    (Linux carries a process's peak RSS across exec)."""
    full = ["taskset", "-c", str(cpu), "nice", "-n", str(nice), *cmd]
    shell = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
    return subprocess.run(
        [*shell, *full], capture_output=True, text=True, check=True, env=_worker_env(cpu)
    )


# ---------------------------------------------------------------------------------------------
# Inputs: the corpus, audfprint's source, the clips


def audfprint_source(git_dir: Path) -> tuple[Path, str]:
    """audfprint's files as of HEAD of `git_dir`, extracted under bench/out (not committed)."""
    dest = OUT / "audfprint-src"
    commit = subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    stamp = dest / ".commit"
    if stamp.is_file() and stamp.read_text() == commit:
        return dest, commit
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "--git-dir", str(git_dir), "archive", "--format=tar", commit],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    stamp.write_text(commit)
    return dest, commit


def make_clips(corpus: Any, n_clips: int) -> list[Clip]:
    """Clip files cut from the corpus's episodes (cached under bench/out/peers/clips)."""
    from bench import corpus as corpus_mod
    from bench.distort import resample

    root = OUT / f"clips-{corpus.profile.name}-{n_clips}"
    manifest = root / "clips.json"
    if manifest.is_file():
        return [Clip(**c) for c in json.loads(manifest.read_text())]
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    sr = corpus_mod.SR
    plan = []
    for k in range(n_clips):
        duration_s = CLIP_DURATIONS_S[k % len(CLIP_DURATIONS_S)]
        speed = 1.0 if (k // len(CLIP_DURATIONS_S)) % 2 == 0 else float(rng.uniform(*SPEED_RANGE))
        ep = corpus.episodes[int(rng.integers(len(corpus.episodes)))]
        source_s = duration_s * speed
        start_s = float(rng.uniform(5.0, ep.duration_s - source_s - 5.0))
        plan.append((k, ep, start_s, duration_s, speed, source_s))
    clips = []
    for k, ep, start_s, duration_s, speed, source_s in plan:
        y = corpus_mod.read_audio(corpus.path(ep), sr=sr, start_s=start_s, duration_s=source_s)
        if speed != 1.0:
            # Played `speed` times faster: the same samples at a rate `speed` times higher.
            y = resample(y, sr_from=round(sr * speed), sr_to=sr)
        path = root / f"clip-{k:03d}-{duration_s:g}s.mp4"
        cmd = [
            _ffmpeg(), "-nostdin", "-y", "-loglevel", "error",
            "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "pipe:0",
            "-f", "lavfi", "-i", "color=c=black:s=32x32:r=5",
            "-map", "0:a", "-map", "1:v", *CLIP_ENCODE, *TINY_VIDEO, "-shortest", str(path),
        ]  # fmt: skip
        subprocess.run(cmd, input=np.asarray(y, "<f4").tobytes(), check=True, capture_output=True)
        clips.append(Clip(str(path), ep.code, start_s, duration_s, speed))
    manifest.write_text(json.dumps([asdict(c) for c in clips]))
    return clips


# ---------------------------------------------------------------------------------------------
# Builds


def build_citywok(corpus: Any, *, cpu: int, nice: int) -> dict[str, Any]:
    index_dir = OUT / "index-citywok"
    shutil.rmtree(index_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "bench.peers", "--worker", "citywok-build"]
    cmd += ["--index", str(index_dir), "--sources", str(corpus.show_dir)]
    out = json.loads(_run_pinned(cmd, cpu=cpu, nice=nice).stdout.splitlines()[-1])
    from matcher.store import CACHE_DIR

    # The index itself, not the build cache beside it.
    out["index_bytes"] = sum(
        p.stat().st_size
        for p in index_dir.rglob("*")
        if p.is_file() and CACHE_DIR not in p.relative_to(index_dir).parts
    )
    return out


def build_audfprint(corpus: Any, src: Path, *, cpu: int, nice: int) -> dict[str, Any]:
    db = OUT / "audfprint.pklz"
    db.unlink(missing_ok=True)
    files = [str(corpus.path(e)) for e in corpus.episodes]
    cmd = [sys.executable, "-m", "bench.peers", "--worker", "audfprint-build"]
    cmd += ["--index", str(db), "--audfprint-src", str(src), "--sources", *files]
    out = json.loads(_run_pinned(cmd, cpu=cpu, nice=nice).stdout.splitlines()[-1])
    out["index_bytes"] = db.stat().st_size
    return out


def _worker_citywok_build(index: Path, sources: list[str]) -> dict[str, Any]:
    from matcher.build import build_index

    wall, cpu = time.perf_counter(), cpu_s()
    report = build_index([Path(s) for s in sources], index_dir=index, workers=1)
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": cpu_s() - cpu,
        "audio_s": report.duration_s,
        "episodes": report.episodes,
        "postings": report.n_postings,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker_audfprint_build(index: Path, sources: list[str], src: Path) -> dict[str, Any]:
    sys.path.insert(0, str(src))
    import audfprint  # type: ignore[import-not-found]

    wall, cpu = time.perf_counter(), cpu_s()
    with contextlib.redirect_stdout(sys.stderr):
        audfprint.main(["audfprint", "new", "--dbase", str(index), "--ncores", "1", *sources])
    import audfprint_analyze  # type: ignore[import-not-found]

    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": cpu_s() - cpu,
        "audio_s": float(sum(_duration_s(Path(s)) for s in sources)),
        "episodes": len(sources),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "hashes_per_s": getattr(audfprint_analyze, "DENSITY", None),
    }


def _duration_s(path: Path) -> float:
    from bench import corpus as corpus_mod

    info = json.loads((path.parents[2] / "corpus.json").read_text())
    by_path = {e["path"]: e["duration_s"] for e in info["episodes"]}
    rel = path.relative_to(path.parents[2]).as_posix()
    return float(by_path.get(rel, 0.0)) or corpus_mod.read_audio(path, sr=8000).size / 8000


# ---------------------------------------------------------------------------------------------
# Query workers: one process per system per block


def _worker_citywok_query(index_dir: Path, clips: list[Clip]) -> dict[str, Any]:
    from matcher.decode import decode_file
    from matcher.identify import Matcher
    from matcher.params import SearchParams
    from matcher.store import load_index

    started = time.perf_counter()
    index = load_index(index_dir, mmap=True)
    matcher = Matcher(index, search=SearchParams())
    load_s = time.perf_counter() - started
    sr = matcher.sr

    def answer(clip: Clip, stages: bool) -> Any:
        audio = decode_file(clip.path, sr=sr, max_duration_s=60.0, timeout_s=60.0)
        if not stages:
            return matcher.identify(audio.samples)
        last = None
        for result in matcher.identify_stages(audio.samples):
            last = result
        return last

    answer(clips[0], True)  # warm-up, untimed
    rows = []
    for clip in clips:
        row: dict[str, Any] = {"clip": Path(clip.path).name}
        for name, stages in (("ms", True), ("whole_ms", False)):
            wall, cpu = time.perf_counter(), cpu_s()
            result = answer(clip, stages)
            row[name] = (time.perf_counter() - wall) * 1e3
            row[name.replace("ms", "cpu_ms")] = (cpu_s() - cpu) * 1e3
            best = result.best
            row["found" if stages else "whole_found"] = bool(
                result.status == "match"
                and best is not None
                and best.episode == clip.episode
                and abs(best.offset_s - clip.start_s) <= 1.0
            )
        rows.append(row)
    return {
        "load_s": load_s,
        "rows": rows,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker_audfprint_query(db: Path, clips: list[Clip], src: Path) -> dict[str, Any]:
    sys.path.insert(0, str(src))
    import audfprint  # type: ignore[import-not-found]
    import hash_table  # type: ignore[import-not-found]

    started = time.perf_counter()
    args = audfprint.docopt.docopt(audfprint.USAGE, argv=["match", "--dbase", str(db)])
    analyzer = audfprint.setup_analyzer(args)
    matcher = audfprint.setup_matcher(args)
    ht = hash_table.HashTable(str(db))
    load_s = time.perf_counter() - started
    names = ht.names

    def answer(clip: Clip) -> Any:
        with contextlib.redirect_stdout(sys.stderr):
            return matcher.match_file(analyzer, ht, clip.path)

    answer(clips[0])  # warm-up, untimed
    rows = []
    for clip in clips:
        wall, cpu = time.perf_counter(), cpu_s()
        results, _dur, _nhash = answer(clip)
        row = {"clip": Path(clip.path).name}
        row["ms"] = (time.perf_counter() - wall) * 1e3
        row["cpu_ms"] = (cpu_s() - cpu) * 1e3
        found = False
        if len(results):
            # Rows: (id, filtered count, time offset in frames, raw count, ...).
            tophit = results[0]
            name = names[int(tophit[0])]
            hop_s = analyzer.n_hop / analyzer.target_sr
            offset_s = float(tophit[2]) * hop_s
            # Its table keeps times modulo 2**maxtimebits frames (~380 s with the defaults).
            period_s = (1 << ht.maxtimebits) * hop_s
            off = (offset_s - clip.start_s) % period_s
            found = f"- {clip.episode} -" in Path(name).name and min(off, period_s - off) <= 1.0
        row["found"] = found
        rows.append(row)
    return {
        "load_s": load_s,
        "rows": rows,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_block(system: str, index: Path, clips_json: Path, src: Path, *, cpu: int, nice: int):
    cmd = [sys.executable, "-m", "bench.peers", "--worker", f"{system}-query"]
    cmd += ["--index", str(index), "--clips-json", str(clips_json), "--audfprint-src", str(src)]
    return json.loads(_run_pinned(cmd, cpu=cpu, nice=nice).stdout.splitlines()[-1])


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audfprint-git", type=Path, default=os.environ.get("AUDFPRINT_GIT"))
    parser.add_argument("--profile", default="large", help="bench.corpus profile (large: 14 h)")
    parser.add_argument("--clips", type=int, default=108)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--cpu", type=int, default=1, help="the core both systems run on")
    parser.add_argument("--nice", type=int, default=5)
    parser.add_argument("--no-build", action="store_true", help="reuse the indexes of a last run")
    parser.add_argument("--no-md", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sources", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--clips-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--audfprint-src", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        clips = (
            [Clip(**c) for c in json.loads(args.clips_json.read_text())] if args.clips_json else []
        )
        out = {
            "citywok-build": lambda: _worker_citywok_build(args.index, args.sources),
            "audfprint-build": lambda: _worker_audfprint_build(
                args.index, args.sources, args.audfprint_src
            ),
            "citywok-query": lambda: _worker_citywok_query(args.index, clips),
            "audfprint-query": lambda: _worker_audfprint_query(
                args.index, clips, args.audfprint_src
            ),
        }[args.worker]()
        print(json.dumps(out, default=float))
        return
    if args.audfprint_git is None:
        raise SystemExit("give audfprint's git directory: --audfprint-git or AUDFPRINT_GIT")
    from bench import corpus as corpus_mod

    started = time.perf_counter()
    log = common.progress_log(started)

    OUT.mkdir(parents=True, exist_ok=True)
    src, commit = audfprint_source(args.audfprint_git)
    corpus = corpus_mod.generate_corpus(corpus_mod.PROFILES[args.profile])
    catalogue_s = sum(e.duration_s for e in corpus.episodes)
    log(f"corpus: {len(corpus.episodes)} episodes, {catalogue_s / 3600:.1f} h")
    clips = make_clips(corpus, args.clips)
    clips_json = OUT / "clips.json"
    clips_json.write_text(json.dumps([asdict(c) for c in clips]))
    results: dict[str, Any] = {
        "command": "python -m bench.peers --audfprint-git AUDFPRINT_GIT"
        + (f" --profile {args.profile}" if args.profile != "large" else "")
        + (f" --clips {args.clips}" if args.clips != 108 else "")
        + (f" --blocks {args.blocks}" if args.blocks != 6 else ""),
        "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": common.machine(),
        "code": common.code_version("matcher"),
        "audfprint_commit": commit,
        "cpu": args.cpu,
        "nice": args.nice,
        "profile": args.profile,
        "episodes": len(corpus.episodes),
        "catalogue_h": catalogue_s / 3600,
        "loadavg_start": loadavg(),
        "ffmpeg": _ffmpeg(),
        "clips": [asdict(c) for c in clips],
        "n_blocks": args.blocks,
    }
    json_path = OUT / "peers.json"
    previous = json.loads(json_path.read_text()) if json_path.is_file() else {}
    citywok_index, audfprint_db = OUT / "index-citywok", OUT / "audfprint.pklz"
    if args.no_build and citywok_index.is_dir() and audfprint_db.is_file():
        results["build"] = previous.get("build", {})
        log("builds: reusing the last run's indexes")
    else:
        log("building CityWok's index (one core)")
        cb = build_citywok(corpus, cpu=args.cpu, nice=args.nice)
        log(f"  {cb['audio_s'] / cb['wall_s']:.0f}x realtime")
        log("building audfprint's index (one core)")
        ab = build_audfprint(corpus, src, cpu=args.cpu, nice=args.nice)
        log(f"  {ab['audio_s'] / ab['wall_s']:.0f}x realtime")
        results["build"] = {"citywok": cb, "audfprint": ab}
    blocks = []
    for k in range(args.blocks):
        order = ("citywok", "audfprint") if k % 2 == 0 else ("audfprint", "citywok")
        block: dict[str, Any] = {"order": order, "loadavg": loadavg()}
        for system in order:
            index = citywok_index if system == "citywok" else audfprint_db
            block[system] = run_block(system, index, clips_json, src, cpu=args.cpu, nice=args.nice)
        blocks.append(block)
        log(
            f"block {k + 1}/{args.blocks}: CityWok p50 "
            f"{pct([r['ms'] for r in block['citywok']['rows']], 50):.0f} ms, audfprint "
            f"{pct([r['ms'] for r in block['audfprint']['rows']], 50):.0f} ms; load {loadavg()}"
        )
    results["blocks"] = blocks
    results["loadavg_end"] = loadavg()
    results["elapsed_s"] = time.perf_counter() - started
    results["summary"] = summarise(results)
    json_path.write_text(json.dumps(results, indent=1, default=float))
    section = markdown(results)
    if not args.no_md:
        common.write_section(section, name="peers", heading=SECTION)
    print(section)


if __name__ == "__main__":
    main()
