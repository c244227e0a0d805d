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
This module runs and scores the queries; bench/accuracy_report.py holds the bars, the
aggregation and the tables.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path

from bench import common
from bench import corpus as corpus_mod
from bench.accuracy_report import Outcome, markdown, summarise_config
from bench.distort import SETS, Query, make_queries, plan_queries, resample
from matcher.build import build_index
from matcher.identify import Matcher
from matcher.params import FingerprintParams, SearchParams
from matcher.result import MatchResult
from matcher.store import load_index

OUT = corpus_mod.OUT
# Timestamps within this many seconds of the truth count as right (in episode time).
TOLERANCE_S = 1.0
SPEED_SETS = ("speed", "pal", "tempo")


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
# What the run was measured on


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
