"""End to end: a clip posted in a channel nobody asked the bot about, live but quiet.

The real discord.py client inside our adapter against the fake Discord: a reaction at once, a
reply only once there is an answer worth showing, edited live to the final one, and nothing
left behind when there is none. Also the per-channel autoscan setting.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.adapters.base import QuietScan
from bot.adapters.discord.autoscan import AUTOSCAN_FILE, AutoscanStore
from bot.adapters.discord.running import SEEN_EMOJI
from bot.core.errors import Busy
from bot.core.states import Failed, Fetching, Finished, Listening, State
from matcher.result import Match, MatchResult
from tests.bot.test_discord import (
    EPISODE,
    MANAGE_GUILD,
    ClipHost,
    clips,
    discord_server,
    executor,
    final_text,
    is_answer,
    make_bot,
    until,
)
from tests.conftest import SR
from tests.fakes.discord_server import embed_text
from tests.media import make_media

__all__ = ["clips", "discord_server", "executor", "make_bot"]


@pytest.fixture(scope="module")
def clip_dir(catalogue: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`clip.mp4`: a second and a half of noise, then 20 s of episode 3 from 1:00. Its first
    3 s are enough for a fair guess, not a sure one, and a clip that long is heard to the end:
    a provisional answer first, then the final one. `noise.mp4`: 12 s found in no episode."""
    root = tmp_path_factory.mktemp("scan-clips")
    rng = np.random.default_rng(99)
    lead = (rng.standard_normal(int(1.5 * SR)) * 0.05).astype(np.float32)
    scene = catalogue[2][60 * SR : 80 * SR].astype(np.float32)
    make_media(root, np.concatenate([lead, scene]), SR, "mp4").rename(root / "clip.mp4")
    noise = (rng.standard_normal(12 * SR) * 0.2).astype(np.float32)
    make_media(root, noise, SR, "mp4").rename(root / "noise.mp4")
    return root


async def test_a_channel_link_gets_a_reaction_at_once_then_a_reply_edited_live(
    make_bot: Any, clips: ClipHost
) -> None:
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message(f"lol which one is this {clips.url()}")

    await server.wait_for(lambda: posted.reaction_log, what="the reaction")
    op, emoji, reacted_at = posted.reaction_log[0]
    assert (op, emoji) == ("add", SEEN_EMOJI)
    reply = await server.wait_for(
        lambda: next((r for r in server.replies_to(posted) if is_answer(r)), None),
        what="the final answer",
    )
    await until(lambda: bot.service.active == 0 and not posted.bot_reactions)

    shown = [embed_text(version) for version in reply.history]
    assert reply.edits >= 1, shown
    assert "Listening" in shown[0] and EPISODE in shown[0], shown  # provisional, then final
    assert all(EPISODE in text for text in shown), shown  # no "Getting the clip…" for anyone
    assert server.bot_messages() == [reply]
    # Acknowledged before the reply, and within a second of the post.
    first_post = server.calls_to("POST", r"/channels/\d+/messages$")[0]
    assert posted.at < reacted_at < first_post.at
    assert reacted_at - posted.at < 1.0
    assert [op for op, _, _ in posted.reaction_log] == ["add", "remove"]


async def test_nothing_found_takes_the_reaction_back_and_posts_nothing(
    make_bot: Any, clips: ClipHost
) -> None:
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message(clips.url("noise.mp4"))
    await server.wait_for(lambda: len(posted.reaction_log) == 2, what="reaction added, removed")
    await until(lambda: bot.service.active == 0)
    assert [op for op, _, _ in posted.reaction_log] == ["add", "remove"]
    assert posted.bot_reactions == []
    assert server.bot_messages() == []


async def test_without_add_reactions_the_scan_still_answers(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot()
    server = bot.server
    server.deny_reactions = True
    posted = await server.post_message(clips.url())
    reply = await server.wait_for(
        lambda: next((r for r in server.replies_to(posted) if is_answer(r)), None)
    )
    assert EPISODE in final_text(reply)
    assert posted.bot_reactions == []
    assert server.calls_to("PUT", r"/reactions/")[0].status == 403


async def test_autoscan_channel_scans_only_the_listed_channels(
    make_bot: Any, clips: ClipHost
) -> None:
    bot = await make_bot()
    server = bot.server

    async def autoscan(state: str) -> str:
        switch = await server.invoke_slash(
            "citywok",
            {"state": state},
            subcommand="autoscan",
            user=server.owner,
            permissions=MANAGE_GUILD,
        )
        await server.wait_for(lambda: switch.original is not None)
        assert switch.ephemeral
        return str(switch.original.payload["content"])  # type: ignore[union-attr]

    listed = await autoscan("channel")
    assert f"<#{server.channel_id}>" in listed and "only" in listed
    scanned = await server.post_message(clips.url())
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(scanned)))
    await until(lambda: bot.service.active == 0)

    unlisted = await autoscan("channel")  # the same command again takes the channel off
    assert "off" in unlisted
    store = AutoscanStore(bot.state_dir / AUTOSCAN_FILE)
    assert store.channels(server.guild_id) == []
    assert not store.enabled(server.guild_id, server.channel_id)
    ignored = await server.post_message(clips.url())
    asked = await server.post_message(clips.url(), mention_bot=True)
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(asked)))
    assert server.replies_to(ignored) == [] and ignored.reaction_log == []

    everywhere = await autoscan("on")
    assert "every channel" in everywhere
    assert AutoscanStore(bot.state_dir / AUTOSCAN_FILE).channels(server.guild_id) is None


# ---- the rules, state by state -------------------------------------------------------------------


def _result(status: str, confidence: float = 0.0, *, heard_s: float = 3.0) -> MatchResult:
    best = Match(
        episode=EPISODE,
        title=None,
        offset_s=60.0,
        query_start_s=0.0,
        query_stop_s=heard_s,
        ref_start_s=60.0,
        ref_stop_s=60.0 + heard_s,
        speed=1.0,
        confidence=confidence,
        votes=40,
        false_alarm_p=1e-6,
    )
    found = status == "match"
    return MatchResult(
        status=status,
        best=best if found else None,
        candidates=[best] if found else [],
        segments=[best] if found else [],
        heard_s=heard_s,
    )


async def _scan(states: list[State]) -> tuple[list[State], QuietScan]:
    async def stream() -> AsyncGenerator[State, None]:
        for state in states:
            yield state

    quiet = QuietScan("r1")
    return [state async for state in quiet.states(stream())], quiet


async def test_quiet_scan_shows_nothing_until_an_interim_answer_names_an_episode() -> None:
    unsure = Listening(_result("no_match"))
    fair = Listening(_result("match", 0.7))
    final = Finished(_result("match", 0.9, heard_s=20.0))
    shown, quiet = await _scan([Fetching(), unsure, fair, final])
    assert shown == [fair, final] and not quiet.retract


async def test_quiet_scan_takes_back_a_reply_whose_answer_fell_short() -> None:
    fair = Listening(_result("match", 0.7))
    shown, quiet = await _scan([Fetching(), fair, Finished(_result("no_match", heard_s=20.0))])
    assert shown == [fair] and quiet.retract
    shown, quiet = await _scan([Fetching(), Failed(Busy("full"), "r1")])
    assert shown == [] and not quiet.retract  # nothing was posted, nothing to take back


def test_autoscan_store_reads_files_from_before_channel_settings(tmp_path: Path) -> None:
    path = tmp_path / AUTOSCAN_FILE
    path.write_text('{"autoscan": {"1": false, "2": true}}', encoding="utf-8")
    store = AutoscanStore(path)
    assert not store.enabled(1, 10) and store.enabled(2, 10) and store.enabled(3, 10)
    assert store.toggle_channel(2, 20) == [20]
    assert store.toggle_channel(2, 30) == [20, 30]
    reread = AutoscanStore(path)
    assert reread.enabled(2, 30) and not reread.enabled(2, 10) and not reread.enabled(1, 10)
    reread.set(2, True)
    assert AutoscanStore(path).enabled(2, 10)
