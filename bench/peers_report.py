"""bench.peers's report: the per-clip, build and memory numbers pooled over the blocks, and the
"Side by side with audfprint" section of bench/RESULTS.md. Reads the results dictionary only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.common import pct
from bench.speed_fixtures import CLIP_DURATIONS_S


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    blocks = results["blocks"]
    clips = {Path(c["path"]).name: c for c in results["clips"]}
    out: dict[str, Any] = {}
    for system in ("citywok", "audfprint"):
        rows = [r for b in blocks for r in b[system]["rows"]]
        s: dict[str, Any] = {
            "n": len(rows),
            "p50_ms": pct([r["ms"] for r in rows], 50),
            "p95_ms": pct([r["ms"] for r in rows], 95),
            "cpu_p50_ms": pct([r["cpu_ms"] for r in rows], 50),
            "cpu_p95_ms": pct([r["cpu_ms"] for r in rows], 95),
            "found_pct": 100.0 * np.mean([r["found"] for r in blocks[0][system]["rows"]]),
            "maxrss_mb": max(b[system]["maxrss_mb"] for b in blocks),
            "load_s": float(np.median([b[system]["load_s"] for b in blocks])),
            "by_duration": {},
        }
        for d in CLIP_DURATIONS_S:
            sel = [r for r in rows if clips[r["clip"]]["duration_s"] == d]
            s["by_duration"][f"{d:g}"] = {
                "p50_ms": pct([r["ms"] for r in sel], 50),
                "p95_ms": pct([r["ms"] for r in sel], 95),
            }
        if system == "citywok":
            s["whole_p50_ms"] = pct([r["whole_ms"] for r in rows], 50)
            s["whole_p95_ms"] = pct([r["whole_ms"] for r in rows], 95)
            s["whole_found_pct"] = 100.0 * np.mean(
                [r["whole_found"] for r in blocks[0][system]["rows"]]
            )
        out[system] = s
    c, a = out["citywok"], out["audfprint"]
    out["ratio"] = {
        "p50": c["p50_ms"] / a["p50_ms"],
        "p95": c["p95_ms"] / a["p95_ms"],
        "cpu_p50": c["cpu_p50_ms"] / a["cpu_p50_ms"],
        "cpu_p95": c["cpu_p95_ms"] / a["cpu_p95_ms"],
        "whole_p50": c["whole_p50_ms"] / a["p50_ms"],
        "whole_p95": c["whole_p95_ms"] / a["p95_ms"],
        "per_block_p50": [
            pct([r["ms"] for r in b["citywok"]["rows"]], 50)
            / pct([r["ms"] for r in b["audfprint"]["rows"]], 50)
            for b in blocks
        ],
        "per_block_p95": [
            pct([r["ms"] for r in b["citywok"]["rows"]], 95)
            / pct([r["ms"] for r in b["audfprint"]["rows"]], 95)
            for b in blocks
        ],
    }
    return out


def _row(name: str, ours_ms: float, theirs_ms: float, ratio: str, bar: str = "") -> str:
    return f"| {name} | {ours_ms:.0f} ms | {theirs_ms:.0f} ms | {ratio} | {bar} |"


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    c, a, r = s["citywok"], s["audfprint"], s["ratio"]
    m = results["machine"]
    hours = results["catalogue_h"]
    lines = [
        f"Reproduce: `{results['command']}` (audfprint's git directory from "
        "`fetch github:dpwe/audfprint` or a clone; it is archived into bench/out at run time and "
        "never imported by the product). Raw numbers: `bench/out/peers/peers.json`. "
        f"Run {results['started_utc']}, {results['elapsed_s'] / 60:.0f} min; audfprint at "
        f"{results['audfprint_commit'][:7]}, CityWok at {results['code']}.",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus']} cores, Python {m['python']}, numpy {m['numpy']}; "
        f"both systems on CPU {results['cpu']} at nice {results['nice']}, BLAS/OpenMP threads 1; "
        f"audfprint's ffmpeg: `{Path(results.get('ffmpeg', '?')).name}`. "
        f"Shared machine: load average {results['loadavg_start']} at the start, "
        f"{results['loadavg_end']} at the end; only the ratio of the two, measured in "
        "alternating blocks, holds.",
        "",
        f"Catalogue: `bench.corpus` profile `{results['profile']}`, {results['episodes']} "
        f"episodes, {hours:.1f} h (mp4: AAC + tiny H.264). Clips: {len(results['clips'])} mp4 "
        "(AAC 44.1 kHz stereo + tiny H.264), a third each of 3, 5 and 10 s, half resampled to "
        f"0.8-1.5x; {results['n_blocks']} blocks, each a fresh process per system that loads "
        "its index once, answers one clip untimed, then times every clip; the order of the two "
        "flips every block.",
        "",
        "| per clip, file to answer | CityWok (speed search on) | audfprint (defaults) | ratio "
        "| bar |",
        "|---|---|---|---|---|",
        _row("p50 wall", c["p50_ms"], a["p50_ms"], f"**{r['p50']:.2f}x**", "<= 0.5x"),
        _row("p95 wall", c["p95_ms"], a["p95_ms"], f"**{r['p95']:.2f}x**", "<= 0.5x"),
        _row("p50 CPU", c["cpu_p50_ms"], a["cpu_p50_ms"], f"{r['cpu_p50']:.2f}x"),
        _row("p95 CPU", c["cpu_p95_ms"], a["cpu_p95_ms"], f"{r['cpu_p95']:.2f}x"),
        f"| whole clip (`identify`), p50 / p95 wall | {c['whole_p50_ms']:.0f} / "
        f"{c['whole_p95_ms']:.0f} ms | | {r['whole_p50']:.2f}x / {r['whole_p95']:.2f}x | |",
        f"| found (episode and time within 1 s) | {c['found_pct']:.0f}% | "
        f"{a['found_pct']:.0f}% | | |",
        f"| peak RSS of the answering process | {c['maxrss_mb']:.0f} MB | "
        f"{a['maxrss_mb']:.0f} MB | | |",
        f"| index load | {c['load_s'] * 1e3:.0f} ms | {a['load_s'] * 1e3:.0f} ms | | |",
    ]
    per50 = ", ".join(f"{x:.2f}" for x in r["per_block_p50"])
    per95 = ", ".join(f"{x:.2f}" for x in r["per_block_p95"])
    lines += ["", f"Ratio per block: p50 {per50}; p95 {per95}.", ""]
    lines += ["| clip | CityWok p50 / p95 | audfprint p50 / p95 |", "|---|---|---|"]
    for d in CLIP_DURATIONS_S:
        cd, ad = c["by_duration"][f"{d:g}"], a["by_duration"][f"{d:g}"]
        lines.append(
            f"| {d:g} s | {cd['p50_ms']:.0f} / {cd['p95_ms']:.0f} ms | "
            f"{ad['p50_ms']:.0f} / {ad['p95_ms']:.0f} ms |"
        )
    b = results["build"]
    if b:
        lines += [
            "",
            "| build, one core, decoding included | CityWok | audfprint |",
            "|---|---|---|",
        ]
        cb, ab = b["citywok"], b["audfprint"]
        lines.append(
            f"| x realtime (wall / CPU) | {cb['audio_s'] / cb['wall_s']:.0f}x / "
            f"{cb['audio_s'] / cb['cpu_s']:.0f}x | {ab['audio_s'] / ab['wall_s']:.0f}x / "
            f"{ab['audio_s'] / ab['cpu_s']:.0f}x |"
        )
        lines.append(
            f"| index on disk | {cb['index_bytes'] / 1e6:.1f} MB "
            f"({cb['index_bytes'] / 1e6 / hours:.2f} MB/h) | {ab['index_bytes'] / 1e6:.1f} MB "
            f"({ab['index_bytes'] / 1e6 / hours:.2f} MB/h) |"
        )
        lines.append(
            f"| peak RSS of the build | {cb['maxrss_mb']:.0f} MB | {ab['maxrss_mb']:.0f} MB |"
        )
    return "\n".join(lines) + "\n"
