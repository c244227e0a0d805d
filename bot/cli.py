"""The `citywok` command line: build and inspect an index, match files, run the demo.

Argument parsing and printing only; the work is in `matcher` (and `bot.ops.demo`).
Exit status: 0 when a command ran (whatever matched), 2 for usage errors, 1 for index or
other errors, each with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import ConfigError, load_settings
from bot.core.errors import UserFacingError
from bot.core.render import describe_result, format_timestamp
from bot.core.request import Link
from matcher.build import build_index
from matcher.decode import Audio, decode_bytes, decode_file
from matcher.errors import MatcherError
from matcher.identify import Matcher
from matcher.names import load_titles
from matcher.params import FingerprintParams
from matcher.result import MatchResult
from matcher.store import index_size_bytes, load_index, read_manifest

if TYPE_CHECKING:
    from bot.fetch.fetcher import Fetcher

# A query longer than this is cut: compilations rarely run longer, and decoding stays bounded.
QUERY_MAX_DURATION_S = 600.0
QUERY_DECODE_TIMEOUT_S = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citywok", description="Which episode is this clip from, and where in it?"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="build or inspect an index").add_subparsers(
        dest="index_command", required=True
    )
    build = index.add_parser("build", help="fingerprint episode files into an index")
    build.add_argument("sources", nargs="+", type=Path, help="episode files or folders")
    build.add_argument("--index", required=True, type=Path, help="index folder")
    build.add_argument("--titles", type=Path, help="CSV or JSON file of episode titles")
    build.add_argument("--workers", type=int, default=1, help="parallel processes")
    build.add_argument("--ffmpeg", help="path to ffmpeg (default: system, then bundled)")
    info = index.add_parser("info", help="describe an index")
    info.add_argument("--index", required=True, type=Path)
    publish = index.add_parser("publish", help="upload an index to S3-compatible storage")
    publish.add_argument("--index", required=True, type=Path)
    publish.add_argument("--to", required=True, help="s3://bucket/prefix")
    publish.add_argument("--endpoint-url", help="e.g. https://ACCOUNT.r2.cloudflarestorage.com")
    pull = index.add_parser("pull", help="download the published index (atomic, verified)")
    pull.add_argument("--from", dest="remote", required=True, help="s3://bucket/prefix")
    pull.add_argument("--index", required=True, type=Path)
    pull.add_argument("--endpoint-url")

    match = commands.add_parser("match", help="identify clips")
    match.add_argument("inputs", nargs="+", help="media files or links (TikTok, Reels, …)")
    match.add_argument("--index", required=True, type=Path)
    match.add_argument("--json", action="store_true", help="one JSON object per input")
    match.add_argument("--ffmpeg")
    match.add_argument("--config", type=Path, help="TOML config (fetch limits for links)")

    demo = commands.add_parser("demo", help="offline demo on a generated catalogue")
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="working folder")

    run = commands.add_parser("run", help="run the chat bot(s) whose tokens are set")
    run.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "index" and args.index_command == "build":
            return _index_build(args)
        if args.command == "index" and args.index_command in ("publish", "pull"):
            return _index_remote(args)
        if args.command == "index":
            return _index_info(args)
        if args.command == "match":
            return _match(args)
        if args.command == "run":
            return _run(args)
        from bot.ops.demo import run_demo

        return run_demo(args.out)
    except MatcherError as e:
        print(f"citywok: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:
        print(f"citywok: config: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    """`citywok run`: exit 0 after a clean stop (SIGTERM/SIGINT), 2 for a bad config, 1 when
    the bot cannot start (no token set, no index)."""
    import os

    from bot.app import StartupError, run
    from bot.logs import configure_logging

    try:
        settings = load_settings(args.config, os.environ)
    except ConfigError as e:
        print(f"citywok: config: {e}", file=sys.stderr)
        return 2
    configure_logging(settings, os.environ)
    try:
        asyncio.run(run(settings))
    except StartupError as e:
        print(f"citywok: {e}", file=sys.stderr)
        return 1
    return 0


def _index_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    titles = load_titles(args.titles) if args.titles else None
    started = time.perf_counter()
    with tqdm(total=0, unit="file", desc="fingerprinting", disable=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = build_index(
            args.sources,
            index_dir=args.index,
            titles=titles,
            workers=args.workers,
            ffmpeg=args.ffmpeg,
            progress=progress,
        )
    elapsed = time.perf_counter() - started
    print(
        f"index {args.index}: {report.episodes} episodes, {report.duration_s / 3600:.2f} h, "
        f"{len(report.fingerprinted)} fingerprinted, {len(report.reused)} reused, "
        f"{len(report.dropped)} dropped, in {elapsed:.1f} s"
    )
    for path in report.unplaced:
        print(f"  not placed (no episode number in the name): {path}")
    for path, kept in report.duplicates:
        print(f"  skipped duplicate: {path} (same episode as {kept})")
    for path, error in report.failed:
        print(f"  failed: {path}: {error}")
    for episode in report.dropped:
        print(f"  dropped (no longer in the sources): {episode}")
    return 0


def _index_remote(args: argparse.Namespace) -> int:
    from bot.ops.remote_index import RemoteLocation, publish_index, pull_index

    if args.index_command == "publish":
        location = RemoteLocation.parse(args.to, endpoint_url=args.endpoint_url)
        manifest = publish_index(args.index, location)
        print(
            f"published {manifest['generation']} ({len(manifest['episodes'])} episodes) "
            f"to {location}"
        )
        return 0
    location = RemoteLocation.parse(args.remote, endpoint_url=args.endpoint_url)
    changed = pull_index(location, args.index)
    print(f"{args.index}: {'updated from' if changed else 'already current with'} {location}")
    return 0


def _index_info(args: argparse.Namespace) -> int:
    load_index(args.index)  # an index that would not serve is reported as damaged, not listed
    manifest = read_manifest(args.index)
    episodes = manifest["episodes"]
    hours = manifest["duration_s"] / 3600
    size = index_size_bytes(args.index)
    seasons = sorted({e["season"] for e in episodes})
    print(f"index {args.index}")
    print(f"  episodes: {len(episodes)} in {len(seasons)} season(s), {hours:.2f} h of audio")
    print(f"  size: {size / 1e6:.2f} MB ({size / 1e6 / max(hours, 1e-9):.2f} MB per hour)")
    print(f"  postings: {manifest['n_postings']}")
    print(f"  format: v{manifest['format_version']}, parameters {manifest['params_digest']}")
    params = ", ".join(f"{k}={v}" for k, v in manifest["params"].items())
    print(f"  parameters: {params}")
    return 0


def _match(args: argparse.Namespace) -> int:
    index = load_index(args.index, params=FingerprintParams())
    matcher = Matcher(index)
    # Links go through the bot's own fetcher (same hosts, caps and network guard), on one loop.
    with asyncio.Runner() as runner, _LinkFetcher(args.config, runner) as links:
        for source in args.inputs:
            started = time.perf_counter()
            try:
                audio = _decode_input(source, links, sr=matcher.sr, ffmpeg=args.ffmpeg)
                result, error = matcher.identify(audio.samples), None
            except (MatcherError, UserFacingError) as e:
                result, error = None, str(e)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            _print_match(args, source, result, error=error, elapsed_ms=elapsed_ms)
    return 0


def _decode_input(source: str, links: _LinkFetcher, *, sr: int, ffmpeg: str | None) -> Audio:
    limits = {"max_duration_s": QUERY_MAX_DURATION_S, "timeout_s": QUERY_DECODE_TIMEOUT_S}
    # Schemes are case-insensitive: `HTTP://…` is a link, not a file path.
    if source.lower().startswith(("http://", "https://")):
        return decode_bytes(links.fetch(source), sr=sr, **limits, ffmpeg=ffmpeg)
    return decode_file(Path(source), sr=sr, **limits, ffmpeg=ffmpeg)


def _print_match(
    args: argparse.Namespace,
    source: str,
    result: MatchResult | None,
    *,
    error: str | None,
    elapsed_ms: float,
) -> None:
    if args.json:
        print(json.dumps(result_json(source, result, error=error, elapsed_ms=elapsed_ms)))
    elif result is None:
        print(f"{source}: error: {error}")
    else:
        print(f"{source}: {describe_result(result)}")
        for seg in result.segments[1:]:
            print(f"  {format_timestamp(seg.query_start_s)}: {seg.episode}")
    sys.stdout.flush()


class _LinkFetcher:
    """The bot's Fetcher for a synchronous command: built on first use, closed at the end."""

    def __init__(self, config: Path | None, runner: asyncio.Runner) -> None:
        self._settings = load_settings(config).fetch
        self._runner = runner
        self._fetcher: Fetcher | None = None

    def __enter__(self) -> _LinkFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fetcher is not None:
            self._runner.run(self._fetcher.close())

    def fetch(self, url: str) -> bytes:
        if self._fetcher is None:
            # Imported here: aiohttp and yt-dlp cost every other command 0.5 s to start.
            from bot.fetch.fetcher import Fetcher

            self._fetcher = Fetcher(self._settings)
        return self._runner.run(self._fetcher.fetch(Link(url)))


def result_json(
    source: str, result: MatchResult | None, *, error: str | None, elapsed_ms: float
) -> dict[str, Any]:
    """The `--json` object for one input, with exactly the documented keys."""
    best = result.best if result else None
    return {
        "input": source,
        "status": "error" if result is None else result.status,
        "episode": best.episode if best else None,
        "title": best.title if best else None,
        "offset_s": round(best.offset_s, 2) if best else None,
        "confidence": best.confidence if best else 0.0,
        "speed": round(best.speed, 4) if best else None,
        "candidates": [
            {"episode": m.episode, "offset_s": round(m.offset_s, 2), "confidence": m.confidence}
            for m in (result.candidates if result else [])
        ],
        "segments": [
            {
                "start_s": round(m.query_start_s, 2),
                "end_s": round(m.query_stop_s, 2),
                "episode": m.episode,
                "offset_s": round(m.offset_s, 2),
                "confidence": m.confidence,
            }
            for m in (result.segments if result else [])
        ],
        "elapsed_ms": round(elapsed_ms, 1),
        "error": error,
    }


if __name__ == "__main__":
    sys.exit(main())
