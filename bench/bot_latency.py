"""Bot latency, end to end through the fake chat servers: `python -m bench.bot_latency`.

The bars (issue): the user's message → the bot's first reply in at most 0.5 s, and a 10 s video
in hand → the final answer in at most 1.5 s.

What runs is what `citywok run` runs: the real python-telegram-bot adapter (and the real
discord.py adapter) with the real core `Service`, `Limits`, `Fetcher`, answer cache and a
`Matcher` over an on-disk index of 20 generated episodes × 5 min (m4a files made with ffmpeg,
indexed with `build_index`, cached under bench/out/bot-latency/). Only the platforms are fakes:
tests/fakes/telegram_server.py and tests/fakes/discord_server.py on 127.0.0.1, in this process
and on the same event loop as the bot. Clips are real 10 s phone-sized videos (540×960 H.264 +
AAC, ~3.5 MB, index at the end of the file as phones write it), each from a different episode
and moment, sent one at a time, each by a new user.

Times come from the fakes (when a Bot API call arrived; when `getUpdates` handed the update to
the bot), from the `Service`'s own `on_step` hook (admitted, fetched, decoded, each stage
result, final), and from thin probes around the real objects (a `Fetcher` subclass around
`fetch`, a thread pool that stamps decode and match jobs). Nothing is replaced: the probes call
the real code and only read the clock.

Scenarios (fresh bot and answer cache each, so no clip is answered from the cache unless that
is the point):
- telegram-video: a DM with a 10 s video, Telegram's pacing (1 s between edits in private);
- telegram-link: a DM with a link to a local media server (fetch allow_networks 127.0.0.0/8);
- telegram-video-unpaced: as telegram-video with no edit pacing, to show the pipeline alone;
- telegram-repeat: a clip sent again (answered from the answer cache);
- discord-attachment: a channel message mentioning the bot with the video attached, Discord's
  pacing (1.2 s between edits).

Not a test: nothing here asserts. Results go to bench/out/bot_latency.json and the "Bot latency"
section of bench/RESULTS.md (only that section is rewritten).

This module drives the scenarios; bench/bot_latency_fixtures.py makes the catalogue, index and
clips, bench/bot_latency_probes.py holds the probes, bench/bot_latency_report.py the report.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.bot_latency_fixtures import (
    CLIP_S,
    OUT,
    REPO,
    SR,
    WORK,
    Clip,
    bench_settings,
    prepare,
    serve_folder,
)
from bench.bot_latency_probes import Core, Probe, children_cpu_s, settle, steps_of
from bench.bot_latency_report import (
    RESULTS_MD,
    RUNS_OUT,
    Sample,
    headline,
    markdown,
    notes,
    pct,
    summarise,
    write_results_md,
)
from bot.adapters.discord.running import EDIT_INTERVAL_S, DiscordAdapter
from bot.adapters.telegram.running import POLL_TIMEOUT_S, PRIVATE_EDIT_INTERVAL_S, TelegramAdapter
from bot.synth.encode import run_ffmpeg
from matcher.decode import decode_bytes
from matcher.identify import Matcher
from matcher.index import FingerprintIndex
from matcher.params import FingerprintParams
from matcher.store import load_index, read_manifest
from tests.fakes.discord_server import FakeDiscord, embed_text
from tests.fakes.telegram_server import TOKEN, FakeTelegramServer, visible_text

JSON_OUT = OUT / "bot_latency.json"


# Titles of replies that are not answers yet (bot.core.render): the final reply is anything else.
PROGRESS_TITLES = ("Getting the clip", "Listening", "Waiting in line")


# ---------------------------------------------------------------------------------------------
# Telegram


class TimedTelegram(FakeTelegramServer):
    """The fake Bot API, also noting when getUpdates handed each message to the bot."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: dict[tuple[int, int], float] = {}

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        updates = await super()._m_getUpdates(params)
        now = time.monotonic()
        for update in updates:
            msg = update["message"]
            self.delivered.setdefault((msg["chat"]["id"], msg["message_id"]), now)
        return updates


def visible(call: Any) -> str:
    return visible_text(str(call.params.get("text", "")), call.params.get("parse_mode"))


def is_final(text: str) -> bool:
    return bool(text) and not text.startswith(PROGRESS_TITLES)


def check(text: str, clip: Clip) -> bool:
    return clip.episode in text and re.search(rf"\bat {clip.expected_at}\b", text, re.I) is not None


async def run_telegram(
    name: str,
    matcher: Matcher,
    generation: str,
    clips: Sequence[Clip],
    clips_dir: Path,
    *,
    paced: bool,
    link_base: str | None = None,
    repeat: int = 0,
    log: Callable[[str], None],
) -> dict[str, Any]:
    server = TimedTelegram()
    await server.start()
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE": server.api_base,
        "TELEGRAM_FILE_BASE": server.file_base,
    }
    settings = bench_settings(env)
    core = Core.build(settings, matcher, generation)
    intervals = {} if paced else {"private_interval_s": 0.0, "group_interval_s": 0.0}
    adapter = TelegramAdapter(settings, core.service, **intervals)
    samples: list[Sample] = []
    try:
        await adapter.start()
        await server.wait_for(lambda c: c.method == "getUpdates")
        plan = list(clips)
        if repeat:
            # Answer the first clip once (not measured), then send it again and again.
            await tg_request(server, core.probe, clips[0], clips_dir, link_base)
            plan = [clips[0]] * repeat
        for clip in plan:
            samples.append(await tg_request(server, core.probe, clip, clips_dir, link_base))
    finally:
        await adapter.stop()
        await core.close()
        await server.close()
    log(f"{name}: {summarise(samples)['final_in_hand_s']}")
    return {
        "name": name,
        "platform": "telegram",
        "source": "link" if link_base else "video",
        "edit_interval_s": PRIVATE_EDIT_INTERVAL_S if paced else 0.0,
        "poll": {"client_timeout_s": POLL_TIMEOUT_S, "fake_max_poll_s": server.max_poll_s},
        "cached": bool(repeat),
        "samples": [dataclasses.asdict(s) for s in samples],
        "summary": summarise(samples),
    }


async def tg_request(
    server: TimedTelegram, probe: Probe, clip: Clip, clips_dir: Path, link_base: str | None
) -> Sample:
    probe.reset()
    user = server.user()
    chat = user["id"]
    data = None if link_base else (clips_dir / clip.file).read_bytes()
    t0 = time.monotonic()
    if link_base:
        msg = server.push_private_text(f"which episode? {link_base}/{clip.file}", user=user)
    else:
        msg = server.push_private_media("video", data, user=user, duration=CLIP_S)

    def replies() -> list[Any]:
        return [
            c
            for c in server.calls
            if c.method in ("sendMessage", "editMessageText")
            and c.ok
            and c.params.get("chat_id") == chat
        ]

    def final() -> Any:
        calls = replies()
        return calls[-1] if calls and is_final(visible(calls[-1])) else None

    last = await server.wait_until(final, timeout_s=60)
    await asyncio.wait_for(probe.ended.wait(), 30)
    await settle(probe)
    delivered = server.delivered[(chat, msg["message_id"])]
    first = replies()[0]
    steps = steps_of(probe, delivered)
    after = [c for c in server.calls if c.time >= t0]
    for method in ("getFile", "download", "sendChatAction"):
        call = next((c for c in after if c.method == method), None)
        if call is not None:
            steps[f"{method}_call"] = call.time - delivered
    if "finished_state" in steps:
        steps["show_final"] = last.time - delivered - steps["finished_state"]
    steps["messages"] = float(len(replies()))
    await asyncio.sleep(0.05)  # let the adapter's typing task and handler wind down
    text = visible(last)
    return Sample(
        correct=check(text, clip),
        delivered_s=delivered - t0,
        first_s=first.time - t0,
        final_s=last.time - t0,
        steps=steps,
        answer=text.replace("\n", " / "),
    )


# ---------------------------------------------------------------------------------------------
# Discord


class TimedDiscord(FakeDiscord):
    """The fake Discord, also noting when each REST call was answered."""

    def __init__(self) -> None:
        super().__init__()
        self.call_times: list[float] = []

    async def _notify(self) -> None:
        now = time.monotonic()
        self.call_times.extend([now] * (len(self.calls) - len(self.call_times)))
        await super()._notify()


async def run_discord(
    matcher: Matcher,
    generation: str,
    clips: Sequence[Clip],
    clips_dir: Path,
    *,
    log: Callable[[str], None],
) -> dict[str, Any]:
    server = TimedDiscord()
    await server.start()
    env = {
        "DISCORD_TOKEN": server.token,
        "DISCORD_API_BASE": server.api_base,
        "DISCORD_GATEWAY_URL": server.gateway_url,
    }
    settings = bench_settings(env, guild_id=server.guild_id)
    core = Core.build(settings, matcher, generation)
    adapter = DiscordAdapter(settings, core.service)
    samples: list[Sample] = []
    try:
        await adapter.start()
        await server.wait_connected()
        for clip in clips:
            samples.append(await dc_request(server, core.probe, clip, clips_dir))
    finally:
        await adapter.stop()
        await core.close()
        await server.close()
    log(f"discord-attachment: {summarise(samples)['final_in_hand_s']}")
    return {
        "name": "discord-attachment",
        "platform": "discord",
        "source": "attachment",
        "edit_interval_s": EDIT_INTERVAL_S,
        "cached": False,
        "samples": [dataclasses.asdict(s) for s in samples],
        "summary": summarise(samples),
    }


async def dc_request(server: TimedDiscord, probe: Probe, clip: Clip, clips_dir: Path) -> Sample:
    probe.reset()
    upload = server.upload(clip.file, (clips_dir / clip.file).read_bytes(), "video/mp4")
    t0 = time.monotonic()
    # Mentioning the bot asks it: an unasked scan of a channel message shows no progress and
    # stays quiet unless it is sure (bot/discord_adapter.py), which is not what a user who
    # asked waits for.
    posted = await server.post_message("", attachments=(upload,), mention_bot=True)
    delivered = time.monotonic()  # the gateway event is written when post_message returns

    def replies() -> list[tuple[float, str]]:
        found = server.replies_to(posted)
        if not found:
            return []
        reply_id = str(found[0].id)
        out = []
        for call, at in zip(server.calls, server.call_times, strict=False):
            body = call.body if isinstance(call.body, dict) else {}
            ref = body.get("message_reference") or {}
            is_reply = call.method == "POST" and str(ref.get("message_id")) == str(posted.id)
            is_edit = call.method == "PATCH" and call.path.endswith(f"/messages/{reply_id}")
            if (is_reply or is_edit) and call.status < 300:
                out.append((at, embed_text(body)))
        return out

    def final() -> tuple[float, str] | None:
        found = replies()
        return found[-1] if found and is_final(found[-1][1]) else None

    final_at, text = await server.wait_for(final, timeout_s=60, what="the final answer")
    await asyncio.wait_for(probe.ended.wait(), 30)
    await settle(probe)
    steps = steps_of(probe, delivered)
    if "finished_state" in steps:
        steps["show_final"] = final_at - delivered - steps["finished_state"]
    first_at = replies()[0][0]
    steps["messages"] = float(len(replies()))
    await asyncio.sleep(0.05)
    return Sample(
        correct=check(text, clip),
        delivered_s=delivered - t0,
        first_s=first_at - t0,
        final_s=final_at - t0,
        steps=steps,
        answer=text.replace("\n", " / "),
    )


# ---------------------------------------------------------------------------------------------
# Decode layouts: what the pipe → temporary file retry costs


def decode_layouts(clip_path: Path, reps: int) -> dict[str, Any]:
    """decode_bytes on the same clip with its index at the end (as phones write it; the pipe
    decode fails and is retried from a temporary file) and at the front (faststart), runs
    interleaved. ffmpeg's CPU time (children's rusage) is kept too: it does not depend on how
    busy the machine is, wall time does."""
    fast = WORK / "faststart.mp4"
    run_ffmpeg("-i", str(clip_path), "-c", "copy", "-movflags", "+faststart", str(fast))
    layouts = {"moov_at_end": clip_path.read_bytes(), "faststart": fast.read_bytes()}
    wall: dict[str, list[float]] = {name: [] for name in layouts}
    cpu: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(reps):
        for name, data in layouts.items():
            before = children_cpu_s()
            started = time.perf_counter()
            decode_bytes(data, sr=SR, max_duration_s=600.0, timeout_s=60.0)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(children_cpu_s() - before)
    return {
        name: {
            "p50_s": pct(wall[name], 50),
            "max_s": round(max(wall[name]), 4),
            "ffmpeg_cpu_p50_s": pct(cpu[name], 50),
            "n": reps,
        }
        for name in layouts
    }


# ---------------------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    index_dir, clips = prepare(args.n, log)
    clips_dir = WORK / "clips"
    index: FingerprintIndex = load_index(index_dir, params=FingerprintParams())
    generation = str(read_manifest(index_dir)["generation"])
    matcher = Matcher(index)
    results: dict[str, Any] = {
        "index": {"episodes": len(index.episodes), "hours": index.duration_s / 3600},
        "clip_mb": float(np.mean([(clips_dir / c.file).stat().st_size for c in clips]) / 2**20),
        "decode_layouts": decode_layouts(clips_dir / clips[0].file, reps=10),
        "poll_timeout_s": POLL_TIMEOUT_S,
        "fake_max_poll_s": 0.5,
        "scenarios": [],
    }
    log("decode layouts: " + json.dumps(results["decode_layouts"]))
    scenarios = results["scenarios"]
    scenarios.append(
        await run_telegram(
            "telegram-video", matcher, generation, clips, clips_dir, paced=True, log=log
        )
    )
    async with serve_folder(clips_dir) as base:
        scenarios.append(
            await run_telegram(
                "telegram-link",
                matcher,
                generation,
                clips,
                clips_dir,
                paced=True,
                link_base=base,
                log=log,
            )
        )
    scenarios.append(
        await run_telegram(
            "telegram-video-unpaced", matcher, generation, clips, clips_dir, paced=False, log=log
        )
    )
    scenarios.append(
        await run_telegram(
            "telegram-repeat",
            matcher,
            generation,
            clips,
            clips_dir,
            paced=True,
            repeat=args.repeats,
            log=log,
        )
    )
    if not args.skip_discord:
        scenarios.append(await run_discord(matcher, generation, clips, clips_dir, log=log))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30, help="requests per scenario (≥30)")
    parser.add_argument("--repeats", type=int, default=10, help="requests answered from cache")
    parser.add_argument("--skip-discord", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="don't touch RESULTS.md")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help=f"rewrite the report from {JSON_OUT.relative_to(REPO)} without running anything",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads(JSON_OUT.read_text())
        results["notes"] = notes(results)
        JSON_OUT.write_text(json.dumps(results, indent=1))
        write_results_md(markdown(results))
        return
    started = time.perf_counter()
    # The bot's warnings and errors are part of the result (a failed edit is latency too).
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )

    log = common.progress_log(started, decimals=1, stream=sys.stderr)
    head = common.run_head("bench.bot_latency", argv, "bot", "matcher", "tests/fakes")
    log(f"machine {head['machine']}; load {head['loadavg_start']}")
    results = {**head, **asyncio.run(run_all(args, log))}
    results["loadavg_end"] = common.loadavg()
    results["total_s"] = time.perf_counter() - started
    results["notes"] = notes(results)
    OUT.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(results, indent=1))
    with RUNS_OUT.open("a") as runs:
        runs.write(json.dumps(headline(results)) + "\n")
    body = markdown(results)
    print(body)
    if not args.no_write:
        write_results_md(body)
        log(
            f"wrote {JSON_OUT.relative_to(REPO)} and the Bot latency section of "
            f"{RESULTS_MD.relative_to(REPO)}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
