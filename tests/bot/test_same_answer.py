"""One clip, three ways in, one answer: Telegram, Discord and `citywok match` agree.

The clip is a real ffmpeg mp4 cut from episode S01E03 at 1:01. It is sent as a Telegram DM
video (the real python-telegram-bot client against the fake Bot API), posted as a Discord
channel attachment mentioning the bot (the real discord.py client against the fake Discord),
and matched by `citywok match --json` in a child process. All three use the same on-disk
index, built from the catalogue's episode files with `build_index`; both adapters share one
core Service as `citywok run` wires them, but without the answer cache, so each platform
really matches the clip instead of repeating the other's answer.

No timing asserts: each side waits on the fakes' recorded state.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bot.adapters.discord import DiscordAdapter
from bot.adapters.telegram import TelegramAdapter
from bot.config import Settings, load_settings
from bot.core.limits import Limits
from bot.core.render import format_timestamp
from bot.core.service import Service
from bot.fetch.fetcher import Fetcher
from matcher.build import build_index
from matcher.identify import Matcher
from matcher.params import FingerprintParams
from matcher.store import load_index
from tests.bot.test_cli import citywok
from tests.bot.test_discord import discord_server, final_text
from tests.bot.test_discord import write_config as write_discord_config
from tests.bot.test_telegram import no_errors_logged, telegram_server
from tests.conftest import SR
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.telegram_server import TOKEN, FakeTelegramServer
from tests.media import make_media

# Fixtures used by name below; imported so pytest finds them in this module.
__all__ = ["discord_server", "no_errors_logged", "telegram_server"]

EPISODE = "S01E03"
CLIP_START_S = 61
CLIP_LENGTH_S = 10
AT = "1:01"
# Titles of the replies that are not answers yet (bot.core.render): wait past these.
PROGRESS_TITLES = ("Getting the clip", "Listening", "Waiting in line")


@dataclass(frozen=True)
class Answer:
    """What a user reads, reduced to what must agree: the episode id and the timestamp text."""

    episode: str | None
    at: str | None


def answer_in(text: str) -> Answer:
    """The episode id and `at m:ss` of a rendered answer (`S01E03 …\\nAt 1:01 (sure, 97%).`)."""
    episode = re.search(r"\bS\d{2}E\d{2}\b", text)
    at = re.search(r"\bat (\d+:\d{2}(?::\d{2})?)\b", text, re.IGNORECASE)
    return Answer(episode and episode.group(), at and at.group(1))


def is_final(text: str) -> bool:
    return bool(text) and not text.startswith(PROGRESS_TITLES)


# ---------------------------------------------------------------------------------------------
# The clip and the index every side uses


@pytest.fixture(scope="module")
def clip(catalogue: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = catalogue[2][CLIP_START_S * SR : (CLIP_START_S + CLIP_LENGTH_S) * SR]
    return make_media(tmp_path_factory.mktemp("same-answer"), scene, SR, "mp4")


@pytest.fixture(scope="module")
def index_dir(episode_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("same-answer-index") / "index"
    report = build_index([episode_files], index_dir=index)
    assert report.episodes == 6 and not report.failed
    return index


@pytest.fixture(scope="module")
def cli_answer(index_dir: Path, clip: Path) -> Answer:
    done = citywok("match", "--index", index_dir, "--json", clip)
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert row["status"] == "match", row
    return Answer(row["episode"], format_timestamp(row["offset_s"]))


# ---------------------------------------------------------------------------------------------
# Both adapters on one core, as `citywok run` starts them


@dataclass
class Bots:
    telegram: FakeTelegramServer
    discord: FakeDiscord


def settings_for(tmp_path: Path, tg: FakeTelegramServer, dc: FakeDiscord) -> Settings:
    config = write_discord_config(tmp_path, dc, intent=True, test_guild=True, per_minute=100)
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE": tg.api_base,
        "TELEGRAM_FILE_BASE": tg.file_base,
        "DISCORD_TOKEN": dc.token,
        "DISCORD_API_BASE": dc.api_base,
        "DISCORD_GATEWAY_URL": dc.gateway_url,
    }
    return load_settings(config, env)


@pytest.fixture
async def bots(
    telegram_server: FakeTelegramServer,
    discord_server: FakeDiscord,
    index_dir: Path,
    tmp_path: Path,
) -> AsyncIterator[Bots]:
    settings = settings_for(tmp_path, telegram_server, discord_server)
    index = load_index(index_dir, params=FingerprintParams())
    limits = Limits(settings.limits)
    fetcher = Fetcher(settings.fetch)
    executor = ThreadPoolExecutor(1, thread_name_prefix="test-matcher")
    service = Service(Matcher(index), fetcher, limits, settings, executor)
    # Unpaced edits: the test waits for the final state, not for Telegram's or Discord's pace.
    telegram = TelegramAdapter(settings, service, private_interval_s=0.0, group_interval_s=0.0)
    discord = DiscordAdapter(settings, service, edit_interval_s=0.0)
    started: list[TelegramAdapter | DiscordAdapter] = []
    try:
        for adapter in (telegram, discord):
            await adapter.start()
            started.append(adapter)
        await discord_server.wait_connected()
        yield Bots(telegram_server, discord_server)
    finally:
        for adapter in reversed(started):
            await adapter.stop()
        await fetcher.close()
        executor.shutdown(wait=True)


async def telegram_answer(server: FakeTelegramServer, clip: Path) -> Answer:
    sent = server.push_private_media("video", clip.read_bytes(), user=server.user("Alice"))

    def final() -> str | None:
        reply = server.reply_to(sent)
        return reply.text if reply is not None and is_final(reply.text) else None

    return answer_in(await server.wait_until(final))


async def discord_answer(server: FakeDiscord, clip: Path) -> Answer:
    upload = server.upload("clip.mp4", clip.read_bytes(), "video/mp4")
    # Mentioned, so it is a request the bot must answer (an unasked channel scan may stay
    # quiet when unsure, and then this test would only time out).
    posted = await server.post_message("", attachments=(upload,), mention_bot=True)

    def final() -> str | None:
        texts = [final_text(r) for r in server.replies_to(posted)]
        return next((t for t in texts if is_final(t)), None)

    return answer_in(await server.wait_for(final, what="the final answer to the attachment"))


# ---------------------------------------------------------------------------------------------


async def test_same_clip_same_answer_on_telegram_discord_and_the_cli(
    bots: Bots, clip: Path, cli_answer: Answer
) -> None:
    on_telegram = await telegram_answer(bots.telegram, clip)
    on_discord = await discord_answer(bots.discord, clip)

    assert on_telegram == on_discord == cli_answer
    assert cli_answer == Answer(EPISODE, AT)
