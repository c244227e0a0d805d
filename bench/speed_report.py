"""bench.speed's report: the verdicts against the issue's bars and the "Speed and memory" section
of bench/RESULTS.md, from the results dictionary alone (no measuring, no files but the all-real
check's JSON).
"""

from __future__ import annotations

import json
from typing import Any

from bench.speed_fixtures import OUT, SPEED_RANGE

BARS = {
    "index_mb_per_hour": ("<=", 1.0),
    "clip10_p50_ms": ("<=", 250.0),
    "clip10_p95_ms": ("<=", 500.0),
    "build_x_realtime_per_core": (">=", 300.0),
    "serving_rss_mb": ("<=", 400.0),
}


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
