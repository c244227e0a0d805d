"""A link to a site the bot cannot open gets "I can't open links from that site", naming the
sites it can, wherever someone asked: Telegram DMs, group mentions and /whichepisode, Discord
DMs, mentions, /whichepisode and the Apps menu. Nobody is charged for it, and a link in a
channel nobody asked the bot about is left alone.

End to end with the real clients against the fakes."""

from __future__ import annotations

from typing import Any

import pytest

from bot.links import MSG_NOT_A_POST, MSG_UNSUPPORTED, SITE_NAMES, link_refusal
from tests.bot.test_discord import discord_server, executor, make_bot, until
from tests.bot.test_telegram import (
    EPISODE,
    BotFactory,
    clip_samples,
    clips,
    no_errors_logged,
    start_bot,
    telegram_server,
)
from tests.fakes.discord_server import embed_text

__all__ = [
    "clip_samples",
    "clips",
    "discord_server",
    "executor",
    "make_bot",
    "no_errors_logged",
    "start_bot",
    "telegram_server",
]
OTHER_SITE = "https://www.dailymotion.com/video/x8abcd"
BARE_ADDRESS = "http://203.0.113.7/watch?v=1"
REFUSAL = "I can't open links from that site"


def names_every_site(text: str) -> bool:
    return REFUSAL in text and all(name in text for name in SITE_NAMES.values())


# ---- Telegram ------------------------------------------------------------------------------------


@pytest.mark.parametrize("link", [OTHER_SITE, BARE_ADDRESS])
async def test_telegram_dm_with_another_sites_link_is_told_which_sites_work(
    start_bot: BotFactory, link: str
) -> None:
    bot = await start_bot()
    sent = bot.server.push_private_text(f"which episode is this {link}", user=bot.server.user())
    reply = await bot.reply(sent, lambda text: REFUSAL in text)
    assert names_every_site(reply.text)


async def test_telegram_group_mention_and_command_get_the_same_refusal(
    start_bot: BotFactory,
) -> None:
    bot = await start_bot()
    server = bot.server
    mention = server.push_group_mention(user=server.user(), text=f"which one? {OTHER_SITE}")
    command = server.push_whichepisode(user=server.user("Bob"), args=OTHER_SITE)
    told = [await bot.reply(sent, lambda text: REFUSAL in text) for sent in (mention, command)]
    assert told[0].text == told[1].text and names_every_site(told[0].text)


async def test_a_refused_link_costs_no_quota(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot(per_minute=1)
    user = bot.server.user()
    refused = bot.server.push_private_text(OTHER_SITE, user=user)
    await bot.reply(refused, lambda text: REFUSAL in text)
    clip = bot.server.push_private_media("video", clips["mp4"], user=user)
    answer = await bot.answer(clip)
    assert EPISODE in answer.text


# ---- Discord -------------------------------------------------------------------------------------


async def test_discord_dm_and_mention_get_the_named_refusal(make_bot: Any) -> None:
    bot = await make_bot()
    server = bot.server
    dm = await server.post_message(f"this one? {OTHER_SITE}", dm=True)
    # Another user: one user's second refusal of a kind within moments stays quiet (floods).
    mention = await server.post_message(
        f"which episode {BARE_ADDRESS}", mention_bot=True, author=server.make_user("bob")
    )
    for posted, channel in ((dm, int(dm.payload["channel_id"])), (mention, None)):
        reply = await server.wait_for(
            lambda p=posted, c=channel: (
                next((m for m in server.bot_messages(c) if REFUSAL in embed_text(m.payload)), None)
                if server.replies_to(p)
                else None
            ),
            what="the refusal",
        )
        assert names_every_site(embed_text(reply.payload))


async def test_discord_slash_command_and_menu_get_the_named_refusal(make_bot: Any) -> None:
    bot = await make_bot()
    server = bot.server
    slash = await server.invoke_slash("whichepisode", {"link": OTHER_SITE})
    await server.wait_for(
        lambda: any(REFUSAL in embed_text(m.payload) for m in slash.all_messages())
    )
    assert all(m.payload["flags"] & 64 for m in slash.all_messages() if not m.deleted)
    posted = await server.post_message(f"look {OTHER_SITE}")
    menu = await server.invoke_context_menu("Which episode?", posted)
    await server.wait_for(
        lambda: any(REFUSAL in embed_text(m.payload) for m in menu.all_messages())
    )
    told = next(m for m in menu.all_messages() if REFUSAL in embed_text(m.payload))
    assert names_every_site(embed_text(told.payload))


async def test_an_unasked_channel_link_to_another_site_stays_silent(make_bot: Any) -> None:
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message(f"lol {OTHER_SITE}")
    # Then something the bot does answer, so that "nothing happened" is not just "not yet".
    asked = await server.post_message("hello", mention_bot=True)
    await server.wait_for(lambda: server.replies_to(asked))
    await until(lambda: bot.service.active == 0)
    assert server.replies_to(posted) == [] and posted.reaction_log == []


# ---- the rule ------------------------------------------------------------------------------------


def test_link_refusals_name_the_reason() -> None:
    assert link_refusal("https://vm.tiktok.com/ZMabc/") is None
    assert link_refusal("https://example.com/clip.mp4") is None  # a file is a file anywhere
    assert link_refusal(OTHER_SITE) == MSG_UNSUPPORTED
    assert link_refusal(BARE_ADDRESS) == MSG_UNSUPPORTED
    assert link_refusal("https://www.tiktok.com/@someone") == MSG_NOT_A_POST
    assert link_refusal("http://203.0.113.7/", extra_hosts=("203.0.113.7",)) is None
    assert names_every_site(MSG_UNSUPPORTED)
