"""A bot that explains itself: /help on both platforms with the user's quota and when used
requests come back, and Telegram's profile texts and command menu, set at start.

End to end with the real discord.py and python-telegram-bot clients against the fakes; the
shared words are checked against every platform limit."""

from __future__ import annotations

import re
import time
from typing import Any

import discord

from bot.adapters.discord.writing import DESCRIPTION_LIMIT, rendered2embed
from bot.adapters.telegram.writing import help_html
from bot.core.help import (
    DESCRIPTION,
    PRIVACY,
    SHORT_DESCRIPTION,
    in_words,
    quota_lines,
    render_help,
)
from bot.core.limits import Quota
from bot.links import SITE_NAMES
from tests.bot.test_discord import (
    ClipHost,
    clip_dir,
    clips,
    discord_server,
    executor,
    is_answer,
    make_bot,
    until,
)
from tests.bot.test_telegram import BotFactory, no_errors_logged, start_bot, telegram_server
from tests.fakes.discord_server import embed_text
from tests.fakes.telegram_server import visible_text

__all__ = [
    "clip_dir",
    "clips",
    "discord_server",
    "executor",
    "make_bot",
    "no_errors_logged",
    "start_bot",
    "telegram_server",
]
TELEGRAM_TEXT_LIMIT = 4096


# ---- Discord -------------------------------------------------------------------------------------


async def test_discord_help_is_ephemeral_and_shows_the_quota_and_when_it_comes_back(
    make_bot: Any, clips: ClipHost
) -> None:
    bot = await make_bot(per_minute=3)
    server = bot.server
    asked = await server.post_message(clips.url(), mention_bot=True)
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(asked)))
    await until(lambda: bot.service.active == 0)

    before = time.time()
    shown = await server.invoke_slash("help")
    await server.wait_for(lambda: shown.original is not None, what="the help")
    assert shown.ephemeral
    text = embed_text(shown.original.payload)  # type: ignore[union-attr]
    assert "/whichepisode" in text and "Apps" in text and "Privacy" in text
    assert "2 more this minute (of 3)" in text
    # "all of them <t:…:R>": a Discord timestamp each client shows as "in 2 minutes".
    (back_at,) = [int(t) for t in re.findall(r"<t:(\d+):R>", text)]
    assert before < back_at <= time.time() + 86_400


async def test_discord_help_works_in_a_dm(make_bot: Any) -> None:
    bot = await make_bot(test_guild=False)  # global commands: the ones DMs have
    shown = await bot.server.invoke_slash("help", dm=True)
    await bot.server.wait_for(lambda: shown.original is not None)
    assert shown.ephemeral
    assert "100 more this minute" in embed_text(shown.original.payload)  # type: ignore[union-attr]


# ---- Telegram ------------------------------------------------------------------------------------


async def test_telegram_profile_texts_and_commands_are_set_at_start(
    start_bot: BotFactory,
) -> None:
    bot = await start_bot()
    server = bot.server
    assert server.description == DESCRIPTION
    assert server.short_description == SHORT_DESCRIPTION
    assert [c["command"] for c in server.commands] == ["whichepisode", "help", "start"]


async def test_telegram_help_shows_the_quota_and_when_it_comes_back(
    start_bot: BotFactory,
) -> None:
    bot = await start_bot(per_minute=5, per_day=100)
    user = bot.server.user()
    chat = bot.server.private_chat(user)
    sent = bot.server.push_private_text("https://example.com/not-a-clip", user=user)
    await bot.reply(sent, lambda text: "can't open" in text)  # costs nothing: see below

    asked = bot.server.push_command("help", user=user, chat=chat)
    reply = await bot.reply(asked, lambda text: "this minute" in text)
    assert "5 more this minute (of 5) and 100 more today (of 100)" in reply.text
    assert "Privacy" in reply.text and "come back" not in reply.text  # nothing used yet


# ---- the words, within every limit ---------------------------------------------------------------


def test_profile_texts_fit_telegram_and_name_every_site() -> None:
    assert len(DESCRIPTION) <= 512 and len(SHORT_DESCRIPTION) <= 120
    assert all(name in DESCRIPTION for name in SITE_NAMES.values())


def test_help_fits_every_platform_for_every_kind_of_quota() -> None:
    quotas = [
        Quota(5, 100, per_minute=5, per_day=100),
        Quota(0, 3, per_minute=5, per_day=100, next_in_s=42.0, full_in_s=7_000.0),
        Quota(4, 0, per_minute=5, per_day=100, next_in_s=860.0, full_in_s=86_400.0),
        Quota(5, 100, exempt=True),
    ]
    for quota in quotas:
        html = help_html(quota, max_download_mb=20)
        assert len(visible_text(html, "HTML")) <= TELEGRAM_TEXT_LIMIT
        embed = rendered2embed(render_help(quota, how_to=["• ask"]))
        assert isinstance(embed, discord.Embed)
        assert embed.description is not None and len(embed.description) <= DESCRIPTION_LIMIT
        assert PRIVACY in embed.description


def test_quota_lines_say_when_used_requests_come_back() -> None:
    blocked = Quota(0, 3, per_minute=5, per_day=100, next_in_s=42.0, full_in_s=7_000.0)
    assert quota_lines(blocked) == [
        "You can ask 0 more this minute (of 5) and 3 more today (of 100).",
        "You can ask again in 42 s.",
        "Used requests come back one by one, not at midnight: all of them in 1 h 57 min.",
    ]
    assert quota_lines(Quota(5, 100, per_minute=5, per_day=100)) == [
        "You can ask 5 more this minute (of 5) and 100 more today (of 100)."
    ]
    assert quota_lines(Quota(5, 100, exempt=True)) == ["You have no request limit."]


def test_waits_in_words_round_up() -> None:
    assert [in_words(s) for s in (0.2, 59.0, 59.5, 61, 3600, 3601, 86_400)] == [
        "in 1 s",
        "in 59 s",
        "in 1 min",
        "in 2 min",
        "in 1 h",
        "in 1 h 1 min",
        "in 24 h",
    ]
