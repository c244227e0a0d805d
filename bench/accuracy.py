"""The accuracy benchmark: how often CityWok names the right episode and time, per query set.

    python -m bench.accuracy [--profile tiny|default|large] [--speed-range 0.75 1.6]
                             [--sets clean,speed] [--write-results]

Generates (or reuses) the corpus of `bench.corpus`, indexes it with `matcher.build.build_index`,
makes the query sets of `bench.distort`, and runs every query through `matcher.identify.Matcher`
under two search configurations:

* `baseline`: plain exact matching, SearchParams with min_speed = max_speed = 1 and no chance
  model (match_false_alarm_p = 1, so any best cell with `min_votes` aligned votes is a match);
* `matcher`: SearchParams() as shipped, with the speed range of `--speed-range` if given.

Writes bench/out/accuracy.md (tables), bench/out/accuracy.json (every number) and
bench/out/accuracy-queries.jsonl (one line per query, for finding what failed); with
`--write-results` the tables also replace the accuracy section of bench/RESULTS.md.
Uses only the matcher's public API: build_index, load_index, Matcher, MatchResult, SearchParams.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from bench import common
from bench import corpus as corpus_mod
from bench.distort import CLIP_LENGTHS_S, SETS, Query, make_queries, plan_queries, resample
from matcher.build import build_index
from matcher.identify import Matcher
from matcher.params import FingerprintParams, SearchParams
from matcher.result import MatchResult
from matcher.store import load_index

OUT = corpus_mod.OUT
# Timestamps within this many seconds of the truth count as right (in episode time).
TOLERANCE_S = 1.0
SPEED_SETS = ("speed", "pal", "tempo")
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


# Plain exact matching: every hypothesis line switched off (the tempo and pitch fields exist only
# in matchers that search those lines) and no chance model, so the best cell's votes decide.
_EXACT = {
    "min_speed": 1.0,
    "max_speed": 1.0,
    "min_tempo": 1.0,
    "max_tempo": 1.0,
    "max_pitch_semitones": 0.0,
    "match_false_alarm_p": 1.0,
}


def _parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def search_configs(
    speed_range: tuple[float, float] | None, overrides: Sequence[str] = ()
) -> dict[str, SearchParams]:
    """`baseline` (exact matching) and `matcher` (shipped defaults, with the given changes).

    overrides: "field=value" strings (JSON values) applied to the `matcher` configuration.
    """
    shipped = SearchParams()
    known = {f.name for f in fields(SearchParams)}
    changes: dict[str, object] = {}
    if speed_range is not None:
        changes.update(min_speed=speed_range[0], max_speed=speed_range[1])
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--search {item!r}: expected FIELD=VALUE with a SearchParams field")
        changes[key] = _parse_value(value)
    baseline = replace(shipped, **{k: v for k, v in _EXACT.items() if k in known})  # type: ignore[arg-type]
    return {"baseline": baseline, "matcher": replace(shipped, **changes)}  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Scoring one query


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


def score(query: Query, result: MatchResult, latency_ms: float) -> Outcome:
    best = result.best
    top1 = result.candidates[0].episode if result.candidates else None
    out = Outcome(
        set=query.set,
        length_s=query.length_s,
        truth_episode=query.episode,
        truth_ref_s=query.ref_s,
        truth_speed=query.speed,
        status=result.status,
        episode=best.episode if best else None,
        offset_s=round(best.offset_s, 3) if best else None,
        speed=round(best.speed, 4) if best else None,
        top1=top1,
        latency_ms=round(latency_ms, 1),
        segments=len(result.segments),
    )
    if query.set == "compilation":
        out.scenes = len(query.scenes)
        out.scenes_right = sum(
            any(
                seg.episode == scene.episode
                and abs(seg.query_start_s - scene.query_start_s) <= TOLERANCE_S
                and abs(seg.query_stop_s - scene.query_stop_s) <= TOLERANCE_S
                and abs(seg.offset_s + scene.query_start_s * seg.speed - scene.ref_s) <= TOLERANCE_S
                for seg in result.segments
            )
            for scene in query.scenes
        )
        return out
    if query.episode is None or best is None or result.status != "match":
        out.wrong = query.set == "absent" and result.status == "match"
        return out
    out.right_episode = best.episode == query.episode
    assert query.ref_s is not None
    out.right_time = out.right_episode and abs(best.offset_s - query.ref_s) <= TOLERANCE_S
    out.wrong = not out.right_time
    if out.right_episode and query.set in SPEED_SETS:
        out.speed_err = round(abs(best.speed / query.speed - 1.0), 5)
    # Matchers that estimate a frequency factor report it as `pitch`.
    pitch = getattr(best, "pitch", None)
    if out.right_episode and query.set == "pitch" and pitch is not None:
        out.speed_err = round(abs(pitch / 2 ** (query.factor / 12) - 1.0), 5)
    return out


# ---------------------------------------------------------------------------------------------
# Aggregating


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


# ---------------------------------------------------------------------------------------------
# Report


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


def machine() -> str:
    m = common.machine()
    return (
        f"{m['cpu_model']}, {m['cpus']} cores, Python {m['python']}, numpy {m['numpy']}"
        " (shared with other jobs: latencies are indicative)"
    )


# ---------------------------------------------------------------------------------------------
# Running


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__)
    parser.add_argument("--profile", choices=sorted(corpus_mod.PROFILES), default="default")
    parser.add_argument(
        "--speed-range",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="speed hypotheses of the `matcher` configuration (default: SearchParams())",
    )
    parser.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a SearchParams field of the `matcher` configuration (repeatable)",
    )
    parser.add_argument("--sets", help="comma-separated subset of: " + ",".join(SETS))
    parser.add_argument("--configs", default="baseline,matcher", help="baseline,matcher")
    parser.add_argument("--clips", type=int, help="queries per set and length (profile's)")
    parser.add_argument("--workers", type=int, default=2, help="processes for generation/build")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--fresh-index",
        action="store_true",
        help="rebuild the index from scratch (the build cache is keyed by fingerprint "
        "parameters, so a changed peak picker with unchanged parameters would be reused)",
    )
    parser.add_argument("--write-results", action="store_true", help="also update bench/RESULTS.md")
    return parser


def run(args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    profile = corpus_mod.PROFILES[args.profile]
    t0 = time.perf_counter()
    corpus = corpus_mod.generate_corpus(profile, args.out, workers=args.workers)
    corpus_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    # One index folder per fingerprint-parameter digest: runs against different matcher
    # versions share the corpus but never rebuild each other's index.
    index_dir = args.out / f"index-{profile.name}-{FingerprintParams().digest()}"
    if args.fresh_index and index_dir.exists():
        shutil.rmtree(index_dir)
    build = build_index([corpus.show_dir], index_dir=index_dir, workers=args.workers)
    build_s = time.perf_counter() - t0
    index = load_index(index_dir)
    hours = build.duration_s / 3600
    print(
        f"index: {build.episodes} episodes, {hours:.2f} h, {len(build.fingerprinted)} "
        f"fingerprinted in {build_s:.1f} s",
        flush=True,
    )
    clips = args.clips or profile.clips
    planned = plan_queries(corpus, clips=clips, seed=profile.seed)
    if args.sets:
        wanted = set(args.sets.split(","))
        unknown = wanted - set(SETS)
        if unknown:
            raise SystemExit(f"unknown sets: {', '.join(sorted(unknown))}")
        planned = [q for q in planned if q.set in wanted]
    configs = {
        name: params
        for name, params in search_configs(
            tuple(args.speed_range) if args.speed_range else None, args.search
        ).items()
        if name in args.configs.split(",")
    }
    matchers = {name: Matcher(index, search=params) for name, params in configs.items()}
    outcomes: dict[str, list[Outcome]] = {name: [] for name in configs}
    records = []
    t0 = time.perf_counter()
    sr = index.params.sr
    for i, query in enumerate(make_queries(corpus, planned)):
        samples = resample(query.samples, sr_from=corpus_mod.SR, sr_to=sr)
        for name, matcher in matchers.items():
            tick = time.perf_counter()
            result = matcher.identify(samples)
            outcome = score(query, result, (time.perf_counter() - tick) * 1000.0)
            outcomes[name].append(outcome)
            records.append({"config": name, **asdict(outcome)})
        if (i + 1) % 50 == 0:
            print(f"queries: {i + 1}/{len(planned)}", flush=True)
    query_s = time.perf_counter() - t0
    return {
        "command": "python -m bench.accuracy " + shlex.join(sys.argv[1:]),
        "machine": machine(),
        "code": common.code_version("matcher"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "profile": asdict(profile),
        "queries_per_cell": clips,
        "corpus_text": (
            f"profile `{profile.name}`: {profile.n_episodes} episodes × "
            f"{profile.episode_s / 60:.0f} min in {profile.seasons} season(s), "
            f"{profile.strangers} held-out episodes × {profile.stranger_s / 60:.0f} min "
            f"(generated in {corpus.generated_s:.0f} s on first run, then cached)"
        ),
        "index_text": (
            f"{build.episodes} episodes, {hours:.2f} h, {build.n_postings} postings, "
            f"{len(build.fingerprinted)} fingerprinted and {len(build.reused)} reused "
            f"in {build_s:.0f} s"
        ),
        "timings_s": {"corpus": corpus_s, "build": build_s, "queries": query_s},
        "elapsed_s": time.perf_counter() - started,
        "configs": {
            name: {
                "description": _describe(name, params),
                "search": asdict(params),
                **summarise_config(outcomes[name]),
            }
            for name, params in configs.items()
        },
        "records": records,
    }


def _describe(name: str, params: SearchParams) -> str:
    lines = [f"speed {params.min_speed:g}–{params.max_speed:g}"]
    if hasattr(params, "min_tempo"):
        lines.append(f"tempo {params.min_tempo:g}–{params.max_tempo:g}")
    if hasattr(params, "max_pitch_semitones"):
        lines.append(f"pitch ±{params.max_pitch_semitones:g} st")
    searched = ", ".join(lines)
    if name == "baseline":
        return (
            f"exact match ({searched}), best cell with ≥{params.min_votes} votes, no chance model"
        )
    changed = {
        f.name: getattr(params, f.name)
        for f in fields(params)
        if getattr(params, f.name) != getattr(SearchParams(), f.name)
    }
    return f"SearchParams() ({searched}; false-alarm p ≤ {params.match_false_alarm_p:g})" + (
        f" with {changed}" if changed else ""
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    report = run(args)
    records = report.pop("records")
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (args.out / "accuracy.md").write_text(text)
    (args.out / "accuracy.json").write_text(json.dumps(report, indent=1, default=float))
    with open(args.out / "accuracy-queries.jsonl", "w") as f:
        for record in records:  # type: ignore[attr-defined]
            f.write(json.dumps(record) + "\n")
    if args.write_results:
        common.write_section(text, name="accuracy", heading="## Accuracy")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
