"""bench.accuracy's report: the issue's bars, one query's Outcome and its aggregation per set and
clip length, and the accuracy section of bench/RESULTS.md (also bench/out/accuracy.md). Reads
outcomes and the run's description only; never runs the matcher.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.distort import CLIP_LENGTHS_S, SETS

MATCH_SETS = tuple(s for s in SETS if s not in {"compilation", "absent", "intro"})
# The bar: (set, clip length) → (minimum %, or maximum % for absent) of the headline.
BAR: dict[tuple[str, float], float] = {
    ("clean", 10.0): 100.0,
    ("aac-32k", 10.0): 100.0,
    ("opus-16k", 10.0): 100.0,
    ("music-10dB", 10.0): 99.0,
    ("music-5dB", 10.0): 99.0,
    ("music-0dB", 10.0): 90.0,
    ("speed", 10.0): 95.0,
    ("tempo", 10.0): 90.0,
    ("pitch", 10.0): 90.0,
    ("phone", 10.0): 95.0,
    ("clean", 5.0): 100.0,
    ("music-10dB", 5.0): 97.0,
    ("music-5dB", 5.0): 97.0,
    ("speed", 5.0): 90.0,
    ("clean", 3.0): 98.0,
    ("compilation", 5.0): 90.0,
    ("compilation", 10.0): 90.0,
    **{("intro", length): 90.0 for length in CLIP_LENGTHS_S},
    **{("absent", length): 1.0 for length in CLIP_LENGTHS_S},
}
CONFIDENT_WRONG_MAX = 0.5
HEADLINE = {
    "absent": "match (false positive) %",
    "intro": "ambiguous %",
    "compilation": "scenes right %",
}


@dataclass
class Outcome:
    set: str
    length_s: float
    truth_episode: str | None
    truth_ref_s: float | None
    truth_speed: float
    status: str
    episode: str | None
    offset_s: float | None
    speed: float | None
    top1: str | None
    latency_ms: float
    right_episode: bool = False
    right_time: bool = False
    wrong: bool = False
    speed_err: float | None = None
    scenes_right: int = 0
    scenes: int = 0
    segments: int = 0


def _pct(flags: Sequence[bool]) -> float:
    return 100.0 * sum(flags) / len(flags) if flags else float("nan")


def summarise(outcomes: Sequence[Outcome]) -> dict[str, object]:
    """Every metric of one (config, set, length) cell."""
    name = outcomes[0].set
    lat = np.array([o.latency_ms for o in outcomes])
    errs = [o.speed_err for o in outcomes if o.speed_err is not None]
    cell: dict[str, object] = {
        "set": name,
        "length_s": outcomes[0].length_s,
        "n": len(outcomes),
        "right_time_pct": _pct([o.right_time for o in outcomes]),
        "right_episode_pct": _pct([o.right_episode for o in outcomes]),
        "top1_pct": _pct([o.top1 is not None and o.top1 == o.truth_episode for o in outcomes]),
        "wrong_pct": _pct([o.wrong for o in outcomes]),
        "match_pct": _pct([o.status == "match" for o in outcomes]),
        "ambiguous_pct": _pct([o.status == "ambiguous" for o in outcomes]),
        "no_match_pct": _pct([o.status == "no_match" for o in outcomes]),
        "speed_err_median_pct": 100.0 * float(np.median(errs)) if errs else None,
        "speed_err_p95_pct": 100.0 * float(np.percentile(errs, 95)) if errs else None,
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
    }
    if name == "compilation":
        total = sum(o.scenes for o in outcomes)
        cell["scenes_right_pct"] = 100.0 * sum(o.scenes_right for o in outcomes) / max(total, 1)
    cell["headline_pct"] = {
        "absent": cell["match_pct"],
        "intro": cell["ambiguous_pct"],
        "compilation": cell.get("scenes_right_pct"),
    }.get(name, cell["right_time_pct"])
    bar = BAR.get((name, outcomes[0].length_s))
    cell["bar_pct"] = bar
    if bar is not None:
        value = float(cell["headline_pct"])  # type: ignore[arg-type]
        cell["pass"] = value <= bar if name == "absent" else value >= bar
    return cell


def summarise_config(outcomes: Sequence[Outcome]) -> dict[str, object]:
    groups: dict[tuple[str, float], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.set, o.length_s)].append(o)
    cells = [summarise(groups[key]) for key in sorted(groups, key=_cell_order)]
    answered = [o for o in outcomes if o.set in MATCH_SETS]
    confident_wrong = _pct([o.wrong for o in answered])
    lat = np.array([o.latency_ms for o in outcomes])
    return {
        "cells": cells,
        "confident_wrong_pct": confident_wrong,
        "confident_wrong_pass": confident_wrong <= CONFIDENT_WRONG_MAX,
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
        "queries": len(outcomes),
    }


def _cell_order(key: tuple[str, float]) -> tuple[int, float]:
    return list(SETS).index(key[0]), key[1]


def _f(value: object, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pass(cell: dict[str, object]) -> str:
    if cell.get("bar_pct") is None:
        return ""
    op = "≤" if cell["set"] == "absent" else "≥"
    verdict = "pass" if cell["pass"] else "**FAIL**"
    return f"{op}{_f(cell['bar_pct'])} {verdict}"


def markdown(report: dict[str, object]) -> str:
    configs: dict[str, dict[str, object]] = report["configs"]  # type: ignore[assignment]
    lines = [
        "Written by `bench/accuracy.py` (`make bench-accuracy-deps` once, then "
        '`make bench-accuracy [PROFILE=tiny|default|large] [ARGS="--speed-range 0.75 1.6"]`). '
        "Every number, and one line per query, is in bench/out/accuracy.json and "
        "accuracy-queries.jsonl.",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Code: {report['code']}  ",
        f"Corpus: {report['corpus_text']}  ",
        f"Index: {report['index_text']}  ",
        f"Run: {report['date']}, {report['queries_per_cell']} queries per set and length, "
        f"total {report['elapsed_s']:.0f} s.",
        "",
        "Headline per set (episode and timestamp within ±1 s, unless noted), by clip length:",
        "",
    ]
    names = list(configs)
    header = ["set"] + [f"{n} {int(length)} s" for n in names for length in CLIP_LENGTHS_S]
    lines += ["| " + " | ".join([*header, "bar (10 s unless noted)"]) + " |"]
    lines += ["|" + "---|" * (len(header) + 1)]
    cells = {
        (n, c["set"], c["length_s"]): c
        for n in names
        for c in configs[n]["cells"]  # type: ignore[attr-defined]
    }
    for name in SETS:
        if not any(k[1] == name for k in cells):
            continue
        label = f"{name} ({HEADLINE[name]})" if name in HEADLINE else name
        row = [label]
        for n in names:
            for length in CLIP_LENGTHS_S:
                cell = cells.get((n, name, length))
                mark = "" if cell is None or cell.get("pass", True) else "✗"
                row.append(_f(cell["headline_pct"]) + mark if cell else "")
        bars = [
            f"{int(length)} s {'≤' if name == 'absent' else '≥'}{_f(BAR[(name, length)])}"
            for length in CLIP_LENGTHS_S
            if (name, length) in BAR
        ]
        lines.append("| " + " | ".join([*row, ", ".join(bars)]) + " |")
    lines.append("")
    lines.append(
        "Confident wrong answers (status `match` with a wrong episode or a timestamp off by more "
        f"than 1 s, over all clips of the in-catalogue sets; bar ≤{CONFIDENT_WRONG_MAX}%): "
        + ", ".join(
            f"{n} {_f(configs[n]['confident_wrong_pct'], 2)}% "
            f"({'pass' if configs[n]['confident_wrong_pass'] else 'FAIL'})"
            for n in names
        )
        + "."
    )
    for n in names:
        config = configs[n]
        lines += [
            "",
            f"#### {n}: {config['description']}",
            "",
            "| set | len | n | ±1 s % | episode % | top-1 % | wrong % | ambig. % | no match % "
            "| speed err med/p95 % | p50 ms | p95 ms | bar |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cell in config["cells"]:  # type: ignore[attr-defined]
            head = "" if cell["set"] not in HEADLINE else f" → {_f(cell['headline_pct'])}"
            speed = (
                f"{_f(cell['speed_err_median_pct'], 2)}/{_f(cell['speed_err_p95_pct'], 2)}"
                if cell["speed_err_median_pct"] is not None
                else "–"
            )
            lines.append(
                f"| {cell['set']}{head} | {int(cell['length_s'])} s | {cell['n']} "
                f"| {_f(cell['right_time_pct'])} | {_f(cell['right_episode_pct'])} "
                f"| {_f(cell['top1_pct'])} | {_f(cell['wrong_pct'])} "
                f"| {_f(cell['ambiguous_pct'])} | {_f(cell['no_match_pct'])} | {speed} "
                f"| {_f(cell['latency_p50_ms'])} | {_f(cell['latency_p95_ms'])} | {_pass(cell)} |"
            )
    lines += [
        "",
        "Columns: ±1 s = status `match`, right episode, timestamp within ±1 s of the truth in "
        "episode time; episode = `match` with the right episode; top-1 = the first candidate's "
        "episode is right whatever the status; wrong = `match` but not right to ±1 s; speed err "
        "= |estimated/true − 1| over right-episode answers (speed, pal and tempo sets; for "
        "the pitch set, of the frequency factor `Match.pitch` where the matcher reports one). "
        "Latency is `Matcher.identify` on decoded 8 kHz samples (fingerprinting and search, "
        "not decoding). "
        "Compilation scenes count when a segment names the scene's episode with both "
        "boundaries and the episode time within ±1 s.",
        "",
        "Sets:",
        "",
        *(f"- `{k}`: {v}" for k, v in SETS.items()),
    ]
    return "\n".join(lines) + "\n"
