"""What bench.bot_latency measures on: the catalogue of generated episodes, its on-disk index and
the phone-sized clips (made once, cached under bench/out/bot-latency/), the settings the fakes
need, and a local media server for link requests. Nothing here is timed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiohttp import web

from bot.config import Settings, load_settings
from bot.core.render import format_timestamp
from bot.synth.encode import Video, encode
from bot.synth.episodes import make_catalogue
from matcher.build import build_index
from matcher.store import MANIFEST

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
WORK = OUT / "bot-latency"

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
