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
the bot) and from thin probes around the real objects (a `Service` subclass that stamps each
state, a `Fetcher` subclass around `fetch`, a thread pool that stamps decode and match jobs).
Nothing is replaced: the probes call the real code and only read the clock.

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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from bench import common
from bot.adapters.discord.running import EDIT_INTERVAL_S, DiscordAdapter
from bot.adapters.telegram.running import POLL_TIMEOUT_S, PRIVATE_EDIT_INTERVAL_S, TelegramAdapter
from bot.config import Settings, load_settings
from bot.core.cache import AnswerCache
from bot.core.limits import Limits
from bot.core.render import format_timestamp
from bot.core.request import Attachment, Link, Request
from bot.core.service import Service
from bot.core.states import Finished, State
from bot.fetch.fetcher import Fetcher
from bot.synth.encode import Video, encode, run_ffmpeg
from bot.synth.episodes import make_catalogue
from matcher.build import build_index
from matcher.decode import decode_bytes
from matcher.identify import Matcher
from matcher.index import FingerprintIndex
from matcher.params import FingerprintParams
from matcher.store import MANIFEST, load_index, read_manifest
from tests.fakes.discord_server import FakeDiscord, embed_text
from tests.fakes.telegram_server import TOKEN, FakeTelegramServer, visible_text

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
WORK = OUT / "bot-latency"
JSON_OUT = OUT / "bot_latency.json"
# One line per run (headline numbers), so the report can show how much the load moves them.
RUNS_OUT = OUT / "bot_latency_runs.jsonl"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
SECTION = "## Bot latency"

BAR_FIRST_S = 0.5
BAR_FINAL_S = 1.5

SR = 8000
N_EPISODES = 20
EPISODE_S = 300.0
CATALOGUE_SEED = 2026
CLIP_S = 10
# Phone-sized video: the download and the demuxing are part of what a user waits for.
VIDEO = Video(
    "testsrc2=s=540x960:r=30",
    ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-pix_fmt", "yuv420p"),
)
AUDIO = ("-c:a", "aac", "-b:a", "128k", "-ar", "44100")
# Titles of replies that are not answers yet (bot.core.render): the final reply is anything else.
PROGRESS_TITLES = ("Getting the clip", "Listening", "Waiting in line")


# ---------------------------------------------------------------------------------------------
# Catalogue, index and clips (cached under bench/out/bot-latency/)


@dataclass(frozen=True)
class Clip:
    file: str  # name in WORK/clips
    episode: str
    start_s: int

    @property
    def expected_at(self) -> str:
        return format_timestamp(self.start_s)


def episode_id(i: int) -> str:
    return f"S01E{i + 1:02d}"


def prepare(n_clips: int, log: Callable[[str], None]) -> tuple[Path, list[Clip]]:
    """Episode files, their index and `n_clips` clips; each made once, then reused."""
    episodes_dir = WORK / "episodes"
    season = episodes_dir / "Season 01"
    index_dir = WORK / "index"
    clips_dir = WORK / "clips"
    clips_json = WORK / "clips.json"
    season.mkdir(parents=True, exist_ok=True)
    clips_dir.mkdir(parents=True, exist_ok=True)
    catalogue: list[np.ndarray] | None = None

    def audio() -> list[np.ndarray]:
        nonlocal catalogue
        if catalogue is None:
            log(f"generating {N_EPISODES} episodes × {EPISODE_S / 60:.0f} min")
            catalogue = make_catalogue(
                sr=SR, n_episodes=N_EPISODES, duration_s=EPISODE_S, seed=CATALOGUE_SEED
            )
        return catalogue

    for i in range(N_EPISODES):
        path = season / f"Bench Show - {episode_id(i)} - Episode {i + 1}.m4a"
        if not path.is_file():
            encode(path, audio()[i], sr=SR, audio_args=AUDIO)
    if not (index_dir / MANIFEST).is_file():
        started = time.perf_counter()
        report = build_index([episodes_dir], index_dir=index_dir, workers=2)
        log(f"index: {report.episodes} episodes in {time.perf_counter() - started:.0f} s")

    clips = plan_clips(n_clips)
    known = json.loads(clips_json.read_text()) if clips_json.is_file() else []
    if [Clip(**c) for c in known[: len(clips)]] != clips or not all(
        (clips_dir / c.file).is_file() for c in clips
    ):
        log(f"encoding {len(clips)} clips of {CLIP_S} s")
        for clip in clips:
            if (clips_dir / clip.file).is_file():
                continue
            i = int(clip.episode[-2:]) - 1
            samples = audio()[i][clip.start_s * SR : (clip.start_s + CLIP_S) * SR]
            encode(clips_dir / clip.file, samples, sr=SR, audio_args=AUDIO, video=VIDEO)
        clips_json.write_text(json.dumps([dataclasses.asdict(c) for c in clips], indent=1))
    return index_dir, clips


def plan_clips(n: int) -> list[Clip]:
    """`n` clips spread over the episodes, each from a distinct moment after the intro."""
    rng = np.random.default_rng(CATALOGUE_SEED)
    clips = []
    for k in range(n):
        i = k % N_EPISODES
        start_s = int(rng.integers(40, int(EPISODE_S) - CLIP_S - 5))
        clips.append(Clip(f"clip-{k:03d}-{episode_id(i)}-{start_s}.mp4", episode_id(i), start_s))
    return clips


# ---------------------------------------------------------------------------------------------
# Probes: the real objects, plus a clock reading at each step


class Probe:
    """Times (time.monotonic) of one request's steps; requests run one at a time."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.marks: dict[str, float] = {}
        self.states: list[tuple[str, float, float | None]] = []
        self.elapsed_ms: float | None = None
        self.cpu: dict[str, float] = {}
        self.ended = asyncio.Event()

    def mark(self, name: str) -> None:
        # Called from worker threads too: a dict store is atomic under the GIL.
        self.marks.setdefault(name, time.monotonic())

    def state(self, state: State) -> None:
        result = getattr(state, "result", None)
        self.states.append(
            (type(state).__name__, time.monotonic(), result.heard_s if result else None)
        )
        if isinstance(state, Finished):
            self.elapsed_ms = state.result.elapsed_ms


class ProbedService(Service):
    """The real Service; stamps when the adapter starts it and each state it yields."""

    def __init__(self, probe: Probe, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe = probe

    async def handle(self, request: Request) -> AsyncIterator[State]:
        self.probe.mark("handle")
        try:
            async with contextlib.aclosing(super().handle(request)) as states:
                async for state in states:
                    self.probe.state(state)
                    yield state
        finally:
            self.probe.mark("end")
            self.probe.ended.set()


class ProbedFetcher(Fetcher):
    def __init__(self, probe: Probe, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe = probe

    async def fetch(self, source: Link | Attachment, *, request_id: str = "-") -> bytes:
        self.probe.mark("fetch_start")
        try:
            return await super().fetch(source, request_id=request_id)
        finally:
            self.probe.mark("fetch_end")


class ProbedExecutor(ThreadPoolExecutor):
    """The matcher pool; stamps when each job was submitted, started and finished."""

    def __init__(self, probe: Probe, workers: int) -> None:
        super().__init__(workers, thread_name_prefix="bench-match")
        self.probe = probe

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        name = getattr(getattr(fn, "func", fn), "__name__", "")
        step = "decode" if "decode" in name else "match"
        probe = self.probe
        probe.mark(f"{step}_submit")

        def timed(*a: Any, **k: Any) -> Any:
            # CPU next to wall time tells computing from waiting for a core: ffmpeg's is the
            # children's rusage (one decode at a time here), the matcher's its thread's.
            probe.mark(f"{step}_start")
            children, thread = _children_cpu_s(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                cpu = _children_cpu_s() - children if step == "decode" else 0.0
                probe.cpu[f"{step}_cpu"] = cpu + time.thread_time() - thread
                probe.mark(f"{step}_end")

        return super().submit(timed, *args, **kwargs)


def bench_settings(env: dict[str, str], *, guild_id: int | None = None) -> Settings:
    """Production defaults, plus what the fakes need: loopback links allowed, quotas that a
    benchmark of many requests does not hit."""
    base = load_settings(None, env)
    return dataclasses.replace(
        base,
        fetch=dataclasses.replace(base.fetch, allow_networks=("127.0.0.0/8",)),
        limits=dataclasses.replace(base.limits, per_minute=100_000, per_day=1_000_000),
        discord=dataclasses.replace(
            base.discord, test_guild_id=guild_id, state_dir=WORK / "discord-state"
        ),
    )


@dataclass
class Core:
    """One bot's core, built as bot.app.run builds it (fresh answer cache)."""

    probe: Probe
    service: ProbedService
    limits: Limits
    fetcher: ProbedFetcher
    executor: ProbedExecutor

    @classmethod
    def build(cls, settings: Settings, matcher: Matcher, generation: str) -> Core:
        probe = Probe()
        executor = ProbedExecutor(probe, settings.matcher.workers)
        fetcher = ProbedFetcher(probe, settings.fetch)
        limits = Limits(settings.limits)
        service = ProbedService(
            probe,
            matcher,
            fetcher,
            limits,
            settings,
            executor,
            cache=AnswerCache(),
            generation=generation,
        )
        return cls(probe, service, limits, fetcher, executor)

    async def close(self) -> None:
        await self.fetcher.close()
        self.executor.shutdown(wait=True)


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


@dataclass
class Sample:
    """One request's timeline, in seconds from the user's message (t=0)."""

    correct: bool
    delivered_s: float  # update handed to the bot (Telegram: getUpdates; Discord: gateway)
    first_s: float  # first reply arrived at the fake
    final_s: float  # the reply's final text arrived at the fake
    steps: dict[str, float] = field(default_factory=dict)
    answer: str = ""

    @property
    def final_in_hand_s(self) -> float:
        return self.final_s - self.delivered_s


def visible(call: Any) -> str:
    return visible_text(str(call.params.get("text", "")), call.params.get("parse_mode"))


def is_final(text: str) -> bool:
    return bool(text) and not text.startswith(PROGRESS_TITLES)


def check(text: str, clip: Clip) -> bool:
    return clip.episode in text and re.search(rf"\bat {clip.expected_at}\b", text, re.I) is not None


async def settle(probe: Probe, timeout_s: float = 5.0) -> None:
    """Wait for the request's worker jobs to finish: the core returns as soon as the final
    result is posted, a moment before the thread that computed it is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(
        f"{step}_start" in probe.marks and f"{step}_end" not in probe.marks
        for step in ("decode", "match")
    ):
        await asyncio.sleep(0.005)


def steps_of(probe: Probe, delivered: float) -> dict[str, float]:
    """Where the time went, from the probes (seconds)."""
    m = probe.marks
    steps: dict[str, float] = {}

    def span(name: str, start: str, stop: str) -> None:
        if start in m and stop in m:
            steps[name] = m[stop] - m[start]

    steps["dispatch"] = m.get("handle", delivered) - delivered
    span("fetch", "fetch_start", "fetch_end")
    span("decode_wait", "decode_submit", "decode_start")
    span("decode", "decode_start", "decode_end")
    span("match_wait", "match_submit", "match_start")
    span("match", "match_start", "match_end")
    finished = next((t for name, t, _ in probe.states if name == "Finished"), None)
    first_result = next(
        (t for name, t, _ in probe.states if name in ("Listening", "Finished")), None
    )
    if finished is not None:
        steps["finished_state"] = finished - delivered
    if first_result is not None and "match_start" in m:
        steps["first_stage"] = first_result - m["match_start"]
    if probe.elapsed_ms is not None:
        steps["matcher_elapsed"] = probe.elapsed_ms / 1000.0
    steps.update(probe.cpu)
    heard = [h for name, _, h in probe.states if name in ("Listening", "Finished")]
    if heard:
        steps["stages"] = float(len(heard))
        steps["heard_s"] = float(heard[-1] or 0.0)
    return steps


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
# A local media server for links


@contextlib.asynccontextmanager
async def serve_folder(folder: Path) -> AsyncIterator[str]:
    """Static files from `folder` on 127.0.0.1; yields the base URL."""
    app = web.Application()
    app.router.add_static("/media", folder)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/media"
    finally:
        await runner.cleanup()


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
            before = _children_cpu_s()
            started = time.perf_counter()
            decode_bytes(data, sr=SR, max_duration_s=600.0, timeout_s=60.0)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(_children_cpu_s() - before)
    return {
        name: {
            "p50_s": pct(wall[name], 50),
            "max_s": round(max(wall[name]), 4),
            "ffmpeg_cpu_p50_s": pct(cpu[name], 50),
            "n": reps,
        }
        for name in layouts
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------
# Numbers and the report


def pct(values: Sequence[float], q: float) -> float:
    return round(common.pct(values, q), 4)


def stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": round(max(values), 4),
    }


def summarise(samples: Sequence[Sample]) -> dict[str, Any]:
    step_names = sorted({k for s in samples for k in s.steps})
    return {
        "n": len(samples),
        "correct": sum(s.correct for s in samples),
        "delivered_s": stats([s.delivered_s for s in samples]),
        "first_s": stats([s.first_s for s in samples]),
        "first_in_hand_s": stats([s.first_s - s.delivered_s for s in samples]),
        "final_s": stats([s.final_s for s in samples]),
        "final_in_hand_s": stats([s.final_in_hand_s for s in samples]),
        "steps": {k: stats([s.steps[k] for s in samples if k in s.steps]) for k in step_names},
    }


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f}"


def verdict(st: dict[str, float], bar: float) -> str:
    if not st:
        return "–"
    p95 = "pass" if st["p95"] <= bar else "**FAIL**"
    worst = "pass" if st["max"] <= bar else "**over**"
    return f"p95 {p95}, max {worst}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['cpus']} cores ({m['usable_cpus']} usable), "
        f"Python {m['python']}, niceness {m['niceness']}; load average "
        f"{results['loadavg_start']} at the start, {results['loadavg_end']} at the end "
        "(shared with other jobs: the times are pessimistic).  ",
        f"Code: {results.get('code', 'unknown')}.  ",
        f"Run: {results['started_utc']} UTC, {results['total_s']:.0f} s in all. Index: "
        f"{results['index']['episodes']} episodes, {results['index']['hours']:.2f} h. Clips: "
        f"{CLIP_S} s, 540×960 H.264 + AAC, {results['clip_mb']:.1f} MB, index at the end of the "
        "file; one request at a time, each from a new user.",
        "",
        "The real adapter (python-telegram-bot 22 / discord.py), core Service, limits, fetcher, "
        "answer cache and matcher, against the fake servers on 127.0.0.1 in the same process "
        "and event loop. Times are when the fake received the bot's call. *Message* = the user "
        "sent it (pushed to the fake); *in hand* = the fake answered the bot's `getUpdates` with "
        "it (Discord: the gateway event was written). Verdicts: p95 against the bar; max shown "
        "too. ms:",
        "",
        "| scenario | n | right | message → first reply p50 / p95 / max | bar 500 | "
        "in hand → final answer p50 / p95 / max | bar 1500 | message → final p50 / p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sc in results["scenarios"]:
        s = sc["summary"]
        first, final, total = s["first_s"], s["final_in_hand_s"], s["final_s"]
        lines.append(
            f"| {describe(sc)} | {s['n']} | {s['correct']} | {ms(first['p50'])} / "
            f"{ms(first['p95'])} / {ms(first['max'])} | {verdict(first, BAR_FIRST_S)} | "
            f"{ms(final['p50'])} / {ms(final['p95'])} / {ms(final['max'])} | "
            f"{verdict(final, BAR_FINAL_S)} | {ms(total['p50'])} / {ms(total['p95'])} |"
        )
    lines += [
        "",
        "Where the time goes (p50 / p95 ms, from the moment the update is in hand unless noted):",
        "",
        "| step | " + " | ".join(sc["name"] for sc in results["scenarios"]) + " |",
        "|---|" + "---|" * len(results["scenarios"]),
    ]
    for key, label in STEP_LABELS:
        cells = []
        for sc in results["scenarios"]:
            st = (
                sc["summary"]["delivered_s"]
                if key == "delivered"
                else sc["summary"]["steps"].get(key, {})
            )
            if not st:
                cells.append("–")
            elif key in COUNT_KEYS:
                cells.append(f"{st['p50']:g} / {st['p95']:g}")
            else:
                cells.append(f"{ms(st['p50'])} / {ms(st['p95'])}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    dl = results["decode_layouts"]
    lines += [
        "",
        f"Decoding the first clip alone (`decode_bytes`, {dl['moov_at_end']['n']} runs each, "
        f"interleaved, p50 wall / ffmpeg CPU): index at the end of the file "
        f"{ms(dl['moov_at_end']['p50_s'])} / {ms(dl['moov_at_end']['ffmpeg_cpu_p50_s'])} ms (the "
        f"pipe decode fails and is retried from a temporary file: two ffmpeg runs), faststart "
        f"{ms(dl['faststart']['p50_s'])} / {ms(dl['faststart']['ffmpeg_cpu_p50_s'])} ms.",
        "",
        *results["notes"],
    ]
    if runs := read_runs():
        lines += ["", *history_md(runs)]
    return "\n".join(lines) + "\n"


COUNT_KEYS = frozenset({"stages", "heard_s", "messages"})
STEP_LABELS = (
    ("delivered", "polling: message → in hand (from the message)"),
    ("dispatch", "PTB/discord.py dispatch → Service.handle"),
    ("sendChatAction_call", "typing indicator call arrives"),
    ("getFile_call", "getFile call arrives"),
    ("download_call", "file download starts"),
    ("fetch", "fetch (getFile + download / HTTP GET)"),
    ("decode_wait", "wait for a matcher thread (decode)"),
    ("decode", "decode (ffmpeg)"),
    ("decode_cpu", "  CPU used by it (ffmpeg + thread)"),
    ("match", "match (fingerprint + stages, in thread)"),
    ("match_cpu", "  CPU used by it (thread)"),
    ("matcher_elapsed", "  the matcher's own elapsed_ms"),
    ("first_stage", "  first stage result reaches the loop"),
    ("stages", "stages shown by the core (count, not ms)"),
    ("heard_s", "audio heard for the answer (s, not ms)"),
    ("finished_state", "Finished state ready"),
    ("messages", "first message + edits shown (count, not ms)"),
    ("show_final", "Finished → final edit arrives (pacing + HTTP)"),
)


def describe(sc: dict[str, Any]) -> str:
    pacing = f"edits ≥{sc['edit_interval_s']:g} s apart" if sc["edit_interval_s"] else "unpaced"
    what = {
        "telegram-video": "Telegram DM, 10 s video",
        "telegram-link": "Telegram DM, link to a local media server",
        "telegram-video-unpaced": "Telegram DM, 10 s video",
        "telegram-repeat": "Telegram DM, the same video again (answer cache)",
        "discord-attachment": "Discord channel message mentioning the bot, 10 s video attached",
    }.get(sc["name"], sc["name"])
    return f"{what} ({pacing})"


def notes(results: dict[str, Any]) -> list[str]:
    by_name = {sc["name"]: sc for sc in results["scenarios"]}
    out = []
    if "telegram-video" in by_name and "telegram-video-unpaced" in by_name:
        paced = by_name["telegram-video"]["summary"]["final_in_hand_s"]
        unpaced = by_name["telegram-video-unpaced"]["summary"]["final_in_hand_s"]
        out.append(
            f"- Edit pacing decides the final time: with Telegram's 1 s between edits the answer "
            f"shows at p50/p95 {ms(paced['p50'])}/{ms(paced['p95'])} ms, unpaced at "
            f"{ms(unpaced['p50'])}/{ms(unpaced['p95'])} ms. `LiveReply` (bot/live.py) holds "
            "every state after the first message until `min_interval_s` after the previous one, "
            "the final one included: an answer ready after 300 ms still waits for the slot at "
            '~1 s, and one that follows a shown "Listening…" edit waits for the slot at ~2 s.'
        )
    for sc in results["scenarios"]:
        if not sc["edit_interval_s"] or sc["cached"]:
            continue
        samples = sc["samples"]
        over = [s for s in samples if s["final_s"] - s["delivered_s"] > BAR_FINAL_S]
        if not over:
            continue
        late = [s for s in over if s["steps"].get("finished_state", 0.0) > BAR_FINAL_S]
        slot = [s for s in over if s not in late and s["steps"].get("messages", 0) > 2]
        other = len(over) - len(late) - len(slot)
        out.append(
            f"- {sc['name']}: {len(over)} of {len(samples)} answers over {BAR_FINAL_S:g} s: "
            f"{len(late)} not ready within {BAR_FINAL_S:g} s (slowest ready at "
            f"{ms(max((s['steps'].get('finished_state', 0.0) for s in over), default=0.0))} ms), "
            f"{len(slot)} ready in time but held for a second edit slot after a progress edit, "
            f"{other} ready in time but the first message or its edit slot came late."
        )
    steps = by_name.get("telegram-video", {}).get("summary", {}).get("steps", {})
    if steps.get("decode_cpu") and steps.get("match_cpu"):
        out.append(
            f"- Wall time against CPU time (telegram-video, p50/p95 ms): decode "
            f"{ms(steps['decode']['p50'])}/{ms(steps['decode']['p95'])} wall for "
            f"{ms(steps['decode_cpu']['p50'])}/{ms(steps['decode_cpu']['p95'])} CPU, match "
            f"{ms(steps['match']['p50'])}/{ms(steps['match']['p95'])} wall for "
            f"{ms(steps['match_cpu']['p50'])}/{ms(steps['match_cpu']['p95'])} CPU: the slow "
            "answers waited for a core on the shared machine (niceness "
            f"{results['machine']['niceness']}, ffmpeg inherits it), they did not compute more."
        )
    if "telegram-repeat" in by_name:
        rep = by_name["telegram-repeat"]["summary"]
        out.append(
            f"- A clip sent again is answered from the cache at p50 "
            f"{ms(rep['steps']['finished_state']['p50'])} ms but shown at "
            f"{ms(rep['final_in_hand_s']['p50'])} ms: for attachments the core yields "
            "`Fetching` before it can look the bytes up (bot/service.py `_work`), the first "
            "message goes out, and the cached answer waits for the next edit slot."
        )
    if "telegram-video" in by_name:
        poll = by_name["telegram-video"]["summary"]["delivered_s"]
        out.append(
            f"- Polling: the fake answers a waiting long poll as soon as an update is queued "
            f"(PTB asks with timeout={results['poll_timeout_s']} s; the fake cuts polls at "
            f"{results['fake_max_poll_s']} s so that shutdown is quick); the fake's polling "
            f"adds p50 {ms(poll['p50'])} ms, max {ms(poll['max'])} ms. Real Telegram adds a "
            "network round trip to every call (getUpdates, sendMessage, getFile, download, "
            "editMessageText), which this benchmark does not model."
        )
    return out


# ---------------------------------------------------------------------------------------------


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers the bars are about, for the run history."""
    row: dict[str, Any] = {
        "started_utc": results["started_utc"],
        "load": [results["loadavg_start"][0], results["loadavg_end"][0]],
        "niceness": results["machine"]["niceness"],
    }
    for sc in results["scenarios"]:
        s = sc["summary"]
        row[sc["name"]] = {
            "first_p95": s["first_s"].get("p95"),
            "final_p50": s["final_in_hand_s"].get("p50"),
            "final_p95": s["final_in_hand_s"].get("p95"),
        }
    return row


def history_md(runs: Sequence[dict[str, Any]]) -> list[str]:
    names = ("telegram-video", "telegram-link", "telegram-video-unpaced", "discord-attachment")
    lines = [
        "Runs so far (first reply p95 / final answer p50, p95, ms; load = 1-min average at the "
        "start and end):",
        "",
        "| run (UTC) | load | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for run in runs[-8:]:
        cells = []
        for name in names:
            h = run.get(name)
            cells.append(
                f"{ms(h['first_p95'])} / {ms(h['final_p50'])}, {ms(h['final_p95'])}" if h else "–"
            )
        note = f" ({run['note']})" if run.get("note") else ""
        load = "→".join(f"{x:g}" for x in run["load"])
        lines.append(f"| {run['started_utc']}{note} | {load} | " + " | ".join(cells) + " |")
    paced = [n for n in names if n != "telegram-video-unpaced"]
    over = [
        run
        for run in runs[-8:]
        if any((run.get(n) or {}).get("final_p95", 0.0) > BAR_FINAL_S for n in paced)
    ]
    if over:
        lines += [
            "",
            f"The final-answer bar was missed at p95 in {len(over)} of {len(runs[-8:])} runs "
            f"shown, at 1-min load {', '.join('→'.join(f'{x:g}' for x in r['load']) for r in over)}"
            f" on {os.cpu_count()} cores: the slow requests' decode and match waited for a core "
            "(see wall against CPU time above), and an answer ready after its first edit slot "
            "waits for the next one.",
        ]
    return lines


def write_results_md(body: str) -> None:
    common.write_section(body, name="bot-latency", heading=SECTION)


def read_runs() -> list[dict[str, Any]]:
    if not RUNS_OUT.is_file():
        return []
    return [json.loads(line) for line in RUNS_OUT.read_text().splitlines() if line.strip()]


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

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    head = {
        "command": "python -m bench.bot_latency" + (" " + " ".join(argv) if argv else ""),
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": common.machine(),
        "code": common.code_version("bot", "matcher", "tests/fakes"),
        "loadavg_start": common.loadavg(),
    }
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
