"""Long clips: CPU and memory of matching ten minutes of noise, heard in windows or in one search.

What stalled the bot before windows: ten minutes of noise in a 1.7 MB Opus file took 198 s and
539 MB on one search over the whole clip. Here the same kind of clip (seeded noise) is matched
three ways, each in a process of its own so that peak RSS is its own: one search over the whole
clip (`long_window_s` out of reach, as before), windows without a budget, and windows within the
bot's default budget (`matcher.budget_cpu_s`, 10 CPU s). A 10 s clip gives the cost per second
of clip that a long one is compared with. Goal: cost linear in the clip, a long clip no dearer
per second than a short one, memory that of one window.

    python -m bench.long_clips [--write]

The index is bench.bot_latency's catalogue (built and cached by that benchmark's fixtures).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from bench import common

MODES = ("single", "windows", "budget")
DEFAULT_BUDGET_CPU_S = 10.0
SR = 8000
NOISE_SEED = 11


def measure(mode: str, duration_s: float) -> dict[str, Any]:
    """One mode in this process: thread CPU, wall time, peak RSS over the warmed-up start."""
    import numpy as np

    from bench.bot_latency_fixtures import prepare
    from matcher.budget import Budget
    from matcher.identify import Matcher
    from matcher.params import SearchParams
    from matcher.store import load_index

    index_dir, _ = prepare(1, lambda _: None)
    index = load_index(index_dir)
    rng = np.random.default_rng(NOISE_SEED)
    noise = (rng.standard_normal(round(duration_s * SR)) * 0.1).astype(np.float32)
    list(Matcher(index).identify_stages(noise[: 10 * SR]))  # compiled kernels, warm caches
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    search = SearchParams(long_window_s=1e9) if mode == "single" else SearchParams()
    budget = Budget(DEFAULT_BUDGET_CPU_S if mode == "budget" else None)
    cpu, wall = time.thread_time(), time.perf_counter()
    results = list(Matcher(index, search=search).identify_stages(noise, budget=budget))
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    final = results[-1]
    return {
        "mode": mode,
        "clip_s": duration_s,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_clip_s": 1000 * cpu / duration_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": before_kb / 1024,
        "heard_s": final.heard_s,
        "status": final.status,
        "index_hours": index.duration_s / 3600,
    }


def run_in_child(mode: str, duration_s: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.long_clips", "--child", mode, str(duration_s)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def markdown(rows: list[dict[str, Any]], machine: dict[str, Any], load: list[list[float]]) -> str:
    lines = [
        "Command: `python -m bench.long_clips --write`  ",
        f"Machine: {machine['cpu_model']}, {machine['cpus']} cores, Python {machine['python']}; "
        f"load average {load[0]} at the start, {load[1]} at the end.  ",
        f"Code: {common.code_version('matcher')}. Index: {rows[0]['index_hours']:.2f} h "
        "(bench.bot_latency's catalogue). Each row is a process of its own; CPU is the matching "
        "thread's, RSS the process peak (after a warm-up on 10 s).",
        "",
        "| clip | how | CPU s | ms CPU per s of clip | peak RSS MB (+ over warm-up) | heard s "
        "| answer |",
        "|---|---|---|---|---|---|---|",
    ]
    words = {
        "single": "one search over the whole clip (before)",
        "windows": "30 s windows, no budget",
        "budget": f"30 s windows, budget {DEFAULT_BUDGET_CPU_S:g} CPU s",
    }
    for r in rows:
        grown = r["peak_rss_mb"] - r["rss_before_mb"]
        lines.append(
            f"| {r['clip_s']:.0f} s noise | {words[r['mode']]} | {r['cpu_s']:.2f} | "
            f"{r['cpu_ms_per_clip_s']:.1f} | {r['peak_rss_mb']:.0f} (+{grown:.0f}) | "
            f"{r['heard_s']:.0f} | {r['status']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write bench/RESULTS.md's section")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], float(args.child[1]))))
        return 0
    load = [common.loadavg()]
    rows = [run_in_child("windows", 10.0)]
    for mode in MODES:
        rows.append(run_in_child(mode, 600.0))
        print(json.dumps(rows[-1]), flush=True)
    load.append(common.loadavg())
    text = markdown(rows, common.machine(), load)
    print(text)
    if args.write:
        common.write_section(text, name="long_clips", heading="## Long clips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
