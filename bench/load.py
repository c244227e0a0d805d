"""The bot under load, as one process, through the fake Telegram Bot API: `python -m bench.load`.

The goal (issue): on this 2-core machine, 300 requests from 100 users in a minute, with another
job keeping one core busy: 0 lost, first reply p95 ≤ 1 s, final answer p95 ≤ 5 s.

What runs is `python -m bot.cli run` (what `citywok run` runs) in a process of its own, with a
TOML config (bench/out/load/citywok.toml) and TELEGRAM_BOT_TOKEN / TELEGRAM_API_BASE /
TELEGRAM_FILE_BASE pointing at tests/fakes/telegram_server.py on 127.0.0.1 in this process: the
real adapter, event loop, thread pool, limits and answer cache, over bench.bot_latency's index
(20 generated episodes × 5 min). Users send private messages with clips at seeded Poisson
arrivals (bench/load_fixtures.py); `--burn-cores` processes spin (`while True: pass`, not niced)
from before the first message to after the last reply, the "other job".

Per request, from the moment its message is pushed to the fake: the first reply (the bot's
sendMessage quoting it) and the final reply (the first text that is not a progress state, as
bench.bot_latency decides; a refusal or an error is final too). A request without a final reply
`--lost-after-s` after the last message is lost. Refusals (busy, one clip at a time, slow down)
are replies, counted by kind, not losses.

Not a test: nothing here asserts. Prints the report; `--write` also replaces the "Load" section
of bench/RESULTS.md; `--json` (default bench/out/load.json) keeps every request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.bot_latency import check, is_final, visible
from bench.load_fixtures import (
    CLIPS,
    WORK,
    Media,
    Planned,
    media_table,
    plan_requests,
    prepare_media,
    unique,
    write_config,
)
from bench.load_report import REFUSALS, Outcome, markdown, summarise, write_results_md
from bot.core.errors import AlreadyWorking, Busy, Internal, NoAudio, RateLimited
from bot.core.render import render_error, render_state
from bot.core.states import Queued
from matcher.store import read_manifest
from tests.fakes.telegram_server import TOKEN, Call, FakeTelegramServer

REPO = common.REPO
JSON_OUT = WORK.parent / "load.json"
BOT_LOG = WORK / "bot.log"
BOT_START_TIMEOUT_S = 120.0
BOT_STOP_TIMEOUT_S = 20.0

# A final reply's title (its first line) → its kind, from the renderer itself.
TITLES = {
    render_error(error).title: error.kind
    for error in (Busy(), AlreadyWorking(), RateLimited(60.0), Internal("-"))
}
QUEUED_TITLE = render_state(Queued(position=1)).title
# Every other user-facing error (no audio, not media, ...) has this title.
OTHER_ERROR_TITLE = render_error(NoAudio()).title


def classify(text: str, media: Media) -> tuple[str, bool | None]:
    """(category, right?) of a final reply's visible text, by its title (the first line)."""
    title = text.split("\n", 1)[0].strip()
    if title in TITLES:
        return TITLES[title], None
    if title == OTHER_ERROR_TITLE:
        return "error", None
    if title == "Not found":
        return "not_found", media.episode is None
    clip = media.clip
    return "answer", clip is not None and check(text, clip)


class LoadTelegram(FakeTelegramServer):
    """The fake Bot API, also following each request's reply as calls arrive: the first reply
    and the first final text, per (chat, message) the user sent. Cheap per call, so that the
    fake keeps up with the load it serves."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[tuple[int, int], float] = {}
        self.final: dict[tuple[int, int], tuple[float, str]] = {}
        self.messages: Counter[tuple[int, int]] = Counter()
        self.queued: set[tuple[int, int]] = set()  # shown "Waiting in line" at some point
        self._reply_of: dict[tuple[int, int], tuple[int, int]] = {}  # bot message → request
        self.expected = 0
        self.all_final = asyncio.Event()

    def _record(self, call: Call) -> None:
        if call.ok and call.method in ("sendMessage", "editMessageText"):
            self._follow(call)
        super()._record(call)

    def _follow(self, call: Call) -> None:
        chat = int(call.params.get("chat_id") or 0)
        if call.method == "sendMessage":
            quoted = (call.response or {}).get("reply_to_message") or {}
            if "message_id" not in quoted:
                return
            key = (chat, int(quoted["message_id"]))
            self._reply_of[(chat, int(call.response["message_id"]))] = key
            self.first.setdefault(key, call.time)
        else:
            found = self._reply_of.get((chat, int(call.params.get("message_id") or 0)))
            if found is None:
                return
            key = found
        self.messages[key] += 1
        text = visible(call)
        if text.startswith(QUEUED_TITLE):
            self.queued.add(key)
        if key not in self.final and is_final(text):
            self.final[key] = (call.time, text)
            if self.expected and len(self.final) >= self.expected:
                self.all_final.set()


# ---------------------------------------------------------------------------------------------
# Processes: the bot, the burners, and what /proc says about them


def start_bot(config: Path, server: FakeTelegramServer) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    env |= {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE": server.api_base,
        "TELEGRAM_FILE_BASE": server.file_base,
    }
    log = BOT_LOG.open("wb")
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def stop_bot(bot: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as a supervisor stops it; killed if it does not stop in time."""
    if bot.poll() is None:
        bot.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(bot.wait, BOT_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            bot.kill()
            await asyncio.to_thread(bot.wait)
    return int(bot.returncode)


def start_burners(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_burners(burners: Sequence[subprocess.Popen[bytes]]) -> None:
    for burner in burners:
        burner.kill()
        burner.wait()


def status_kb(pid: int, field: str) -> int:
    """A `kB` field (VmRSS, VmHWM) of /proc/<pid>/status; 0 once the process is gone."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def cpu_ticks_s(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of `pid` (and of its waited-for children, e.g. ffmpeg)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # Fields 14-17 of proc(5) (utime, stime, cutime, cstime), counted after the ")".
        ticks = sum(int(x) for x in fields[11 : 15 if children else 13])
        return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


async def sample_rss(pid: int, out: list[tuple[float, int]], every_s: float = 1.0) -> None:
    while True:
        out.append((time.monotonic(), status_kb(pid, "VmRSS")))
        await asyncio.sleep(every_s)


# ---------------------------------------------------------------------------------------------
# The load


async def push_all(
    server: LoadTelegram,
    plan: Sequence[Planned],
    media: Sequence[Media],
    payloads: Sequence[bytes],
    users: list[dict[str, Any]],
    t_start: float,
) -> list[tuple[Planned, float, tuple[int, int]]]:
    """Each planned message at its time: (plan, when pushed, (chat, message id))."""
    pushed = []
    for p in plan:
        delay = t_start + p.at_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        m = media[p.media]
        data = unique(payloads[p.media], p.n)
        user = users[p.user]
        t0 = time.monotonic()
        msg = server.push_private_media(m.kind, data, user=user, **m.fields())
        pushed.append((p, t0, (user["id"], int(msg["message_id"]))))
    return pushed


async def wait_polling(bot: subprocess.Popen[bytes], server: FakeTelegramServer) -> None:
    """Until the bot's first getUpdates: the index is loaded and the adapter started."""
    deadline = time.monotonic() + BOT_START_TIMEOUT_S
    while not server.calls_of("getUpdates"):
        if bot.poll() is not None or time.monotonic() > deadline:
            tail = BOT_LOG.read_text(errors="replace")[-2000:]
            raise SystemExit(f"the bot did not start polling ({bot.poll()}):\n{tail}")
        await asyncio.sleep(0.1)


async def wait_final(bot: subprocess.Popen[bytes], server: LoadTelegram, deadline: float) -> None:
    """Until every request has its final reply or was refused again without one (the bot's log
    says so), the deadline passes or the bot dies."""
    while not server.all_final.is_set() and bot.poll() is None:
        left_s = deadline - time.monotonic()
        if left_s <= 0 or len(server.final) + quiet_refusals(BOT_LOG) >= server.expected:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.all_final.wait(), min(left_s, 0.5))


def peak_per_s(times: Sequence[float]) -> int:
    return max(Counter(int(t) for t in times).values(), default=0)


# What the bot logs for a refusal it repeats without a reply (bot.core.service).
QUIET_MARK = "(again: no reply)"
# bot.core.limits.REFUSAL_WINDOW_S: a refusal of a kind is said once per window.
REFUSAL_WINDOW_S = 30.0


def quiet_refusals(path: Path) -> int:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return text.count(QUIET_MARK)


def mark_quiet_repeats(outcomes: Sequence[Outcome]) -> int:
    """Requests without a reply whose user was refused within the window before: refused again
    in silence, by design (one refusal per window). Returns how many."""
    told: dict[int, list[float]] = {}
    quiet = 0
    for o in sorted(outcomes, key=lambda o: o.pushed_s):
        if o.category in REFUSALS:
            told.setdefault(o.user, []).append(o.pushed_s)
        elif o.category == "lost" and any(
            0 <= o.pushed_s - t < REFUSAL_WINDOW_S for t in told.get(o.user, [])
        ):
            o.category = "quiet_repeat"
            quiet += 1
    return quiet


def log_counts(path: Path) -> tuple[int, int]:
    text = path.read_text(errors="replace") if path.is_file() else ""
    lines = text.splitlines()
    return sum(" WARNING " in ln for ln in lines), sum(" ERROR " in ln for ln in lines)


async def run_load(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    index_dir, media = prepare_media(log)
    payloads = [(CLIPS / m.file).read_bytes() for m in media]
    plan = plan_requests(
        users=args.users, requests=args.requests, seconds=args.seconds, seed=args.seed, media=media
    )
    manifest = read_manifest(index_dir)
    config = write_config(index_dir, per_minute=args.per_minute, workers=args.workers)
    server = LoadTelegram()
    server.expected = len(plan)
    await server.start()
    users = [server.user(f"User{k}") for k in range(args.users)]
    bot = start_bot(config, server)
    burners: list[subprocess.Popen[bytes]] = []
    rss: list[tuple[float, int]] = []
    sampler: asyncio.Task[None] | None = None
    try:
        await wait_polling(bot, server)
        start_rss_kb = status_kb(bot.pid, "VmRSS")
        log(f"bot {bot.pid} polling, {start_rss_kb / 1024:.0f} MB; {args.burn_cores} burner(s)")
        burners = start_burners(args.burn_cores)
        burn_wall, burn_cpu = time.monotonic(), [cpu_ticks_s(b.pid) for b in burners]
        sampler = asyncio.create_task(sample_rss(bot.pid, rss))
        bench_cpu = time.process_time()
        bot_cpu = cpu_ticks_s(bot.pid, children=True)
        t_start = time.monotonic()
        pushed = await push_all(server, plan, media, payloads, users, t_start)
        log(f"pushed {len(pushed)} messages; waiting for the last replies")
        deadline = (pushed[-1][1] if pushed else t_start) + args.lost_after_s
        await wait_final(bot, server, deadline)
        t_end = max([f[0] for f in server.final.values()], default=time.monotonic())
        load_s = t_end - t_start
        bot_cpu = cpu_ticks_s(bot.pid, children=True) - bot_cpu
        bench_cpu = time.process_time() - bench_cpu
        peak_kb = status_kb(bot.pid, "VmHWM")
        burn_cpu = sum(cpu_ticks_s(b.pid) for b in burners) - sum(burn_cpu)
        burn_wall = time.monotonic() - burn_wall
    finally:
        if sampler is not None:
            sampler.cancel()
        stop_burners(burners)
        exit_code = await stop_bot(bot)
        await server.close()

    outcomes = []
    for p, t0, key in pushed:
        m = media[p.media]
        o = Outcome(
            n=p.n,
            user=p.user,
            media=m.file,
            variant=m.variant,
            kind=m.kind,
            planned_s=round(p.at_s, 4),
            pushed_s=round(t0 - t_start, 4),
            messages=server.messages[key],
            queued=key in server.queued,
        )
        if key in server.first:
            o.first_s = round(server.first[key] - t0, 4)
        if key in server.final:
            at, text = server.final[key]
            o.final_s = round(at - t0, 4)
            o.category, o.correct = classify(text, m)
            o.text = text.replace("\n", " / ")
        outcomes.append(o)
    quiet = mark_quiet_repeats(outcomes)
    quiet_logged = quiet_refusals(BOT_LOG)
    if quiet != quiet_logged:
        log(f"{quiet} silent requests look like repeated refusals, the bot logged {quiet_logged}")
    api = [c for c in server.calls if c.method != "getUpdates" and c.time >= t_start]
    warnings, errors = log_counts(BOT_LOG)
    return {
        "config": {
            "users": args.users,
            "requests": args.requests,
            "seconds": args.seconds,
            "burn_cores": args.burn_cores,
            "seed": args.seed,
            "per_minute": args.per_minute,
            "workers": args.workers,
            "lost_after_s": args.lost_after_s,
            "bot_config": config.read_text(),
        },
        "index": {"episodes": len(manifest["episodes"]), "hours": manifest["duration_s"] / 3600},
        "media": media_table(media),
        "load_s": load_s,
        "quiet_repeats": {"silent_after_a_refusal": quiet, "logged_by_the_bot": quiet_logged},
        "bot": {
            "pid": bot.pid,
            "start_rss_mb": start_rss_kb / 1024,
            "peak_rss_mb": peak_kb / 1024,
            "rss_mb": [(round(t - t_start, 1), round(kb / 1024, 1)) for t, kb in rss],
            "cpu_s": bot_cpu,
            "exit_code": exit_code,
            "log": str(BOT_LOG.relative_to(REPO)),
            "log_warnings": warnings,
            "log_errors": errors,
        },
        "burners": {"n": len(burners), "cpu_s": burn_cpu, "wall_s": burn_wall},
        "bench_cpu_s": bench_cpu,
        "fake": {
            "peak_calls_per_s": peak_per_s([c.time for c in api if c.method != "download"]),
            "peak_messages_per_s": peak_per_s(
                [c.time for c in api if c.method in ("sendMessage", "editMessageText")]
            ),
            "failed_calls": sum(not c.ok for c in api),
            "calls_by_method": dict(Counter(c.method for c in api).most_common()),
        },
        "summary": summarise(outcomes),
        "requests": [dataclasses.asdict(o) for o in outcomes],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0, help="arrivals spread over this")
    parser.add_argument("--burn-cores", type=int, default=1, help="CPU burner processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-minute", type=int, default=10, help="limits.per_minute")
    parser.add_argument("--workers", type=int, help="matcher.workers (default: the bot's)")
    parser.add_argument(
        "--lost-after-s",
        type=float,
        default=60.0,
        help="no final reply this long after the last message: lost",
    )
    parser.add_argument("--json", type=Path, default=JSON_OUT, help="every request, as JSON")
    parser.add_argument("--write", action="store_true", help="replace the Load section")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    log = common.progress_log(started, decimals=1, stream=sys.stderr)
    head = common.run_head("bench.load", argv, "bot", "matcher", "tests/fakes")
    log(f"machine {head['machine']}; load {head['loadavg_start']}")
    results = {**head, **asyncio.run(run_load(args, log))}
    results["loadavg_end"] = common.loadavg()
    results["total_s"] = time.perf_counter() - started
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    body = markdown(results)
    print(body)
    log(f"wrote {args.json}")
    if args.write:
        write_results_md(body)
        log("wrote the Load section of bench/RESULTS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
