"""End to end: the real discord.py client inside our adapter, against a fake Discord.

Everything between the fake server and the matcher is real: discord.py's HTTP and gateway code,
the adapter, the core Service with its limits and fetcher, ffmpeg decoding, and the Matcher over
the in-memory synthetic catalogue. Clips are real media files encoded by ffmpeg and served over
HTTP from 127.0.0.1 (links) or from the fake's CDN path (attachments).

No sleeps and no timing asserts: tests wait on the fake's recorded state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import numpy as np
import pytest
from aiohttp import web

from bot.adapters.discord.autoscan import AUTOSCAN_FILE, AutoscanStore
from bot.adapters.discord.reading import DOWNLOAD_FAILED
from bot.adapters.discord.running import CONTEXT_MENU_NAME, NO_INTENT_NOTE, DiscordAdapter
from bot.adapters.discord.writing import MessageReplyTarget, rendered2embed
from bot.config import load_settings
from bot.core.limits import Limits
from bot.core.live import RetryLater
from bot.core.render import Rendered
from bot.core.service import Service
from bot.fetch.fetcher import Fetcher
from matcher.identify import Matcher
from matcher.index import Episode, FingerprintIndex
from tests.conftest import SR
from tests.fakes.discord_server import EPHEMERAL, FakeDiscord, MessageRecord, embed_text
from tests.media import make_media

EPISODE = "S01E03"
MANAGE_GUILD = 1 << 5


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
async def discord_server() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.close()


@pytest.fixture(scope="module")
def clip_dir(catalogue: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real media: 6 s of unrelated noise (a meme intro), then 8 s of episode 3 from 1:00.

    The noisy start keeps the first listening stages unsure, so the reply goes through several
    states before the answer. `noise.mp4`: 12 s found in no episode."""
    root = tmp_path_factory.mktemp("discord-clips")
    rng = np.random.default_rng(99)
    intro = (rng.standard_normal(6 * SR) * 0.05).astype(np.float32)
    scene = catalogue[2][60 * SR : 68 * SR].astype(np.float32)
    samples = np.concatenate([intro, scene])
    make_media(root, samples, SR, "mp4").rename(root / "clip.mp4")
    noise = (rng.standard_normal(12 * SR) * 0.2).astype(np.float32)
    make_media(root, noise, SR, "mp4").rename(root / "noise.mp4")
    return root


@dataclass
class ClipHost:
    """Where links point: the clip folder over HTTP. Gated URLs answer only once `gate` is set,
    so a test can act while a request is certainly still fetching; `hits` counts requests per
    name (a gated one is counted when it starts waiting)."""

    base: str
    gate: asyncio.Event
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, name: str = "clip.mp4", *, gated: bool = False) -> str:
        return f"{self.base}/{'gated' if gated else 'media'}/{name}"


@pytest.fixture
async def clips(clip_dir: Path) -> AsyncIterator[ClipHost]:
    """Serves the test clips on 127.0.0.1; any other name is a 404."""
    host = ClipHost("", asyncio.Event())

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        host.hits[name] = host.hits.get(name, 0) + 1
        if request.path.startswith("/gated/"):
            await host.gate.wait()
        if not (clip_dir / name).is_file():
            return web.Response(status=404)
        return web.FileResponse(clip_dir / name)

    app = web.Application()
    app.router.add_get("/media/{name}", serve)
    app.router.add_get("/gated/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    host.base = f"http://127.0.0.1:{port}"
    yield host
    host.gate.set()
    await runner.cleanup()


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-matcher")
    yield pool
    pool.shutdown(wait=True)


def write_config(
    tmp_path: Path, server: FakeDiscord, *, intent: bool, test_guild: bool, per_minute: int
) -> Path:
    guild = f"test_guild_id = {server.guild_id}\n" if test_guild else ""
    path = tmp_path / "citywok.toml"
    path.write_text(
        f"""
[index]
dir = "{tmp_path / "index"}"

[matcher]
workers = 1
stages_s = [3, 5, 10]

[fetch]
allow_networks = ["127.0.0.0/8"]
timeout_s = 20

[limits]
per_minute = {per_minute}
per_day = 1000
max_concurrent = 2

[discord]
{guild}message_content_intent = {str(intent).lower()}
state_dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    return path


class Bot:
    """The adapter with the real core, pointed at the fake."""

    def __init__(
        self, adapter: DiscordAdapter, server: FakeDiscord, state_dir: Path, service: Service
    ) -> None:
        self.adapter = adapter
        self.server = server
        self.state_dir = state_dir
        self.service = service


@pytest.fixture
async def make_bot(
    discord_server: FakeDiscord,
    memory_index: FingerprintIndex,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> AsyncIterator[Any]:
    bots: list[DiscordAdapter] = []
    fetchers: list[Fetcher] = []

    async def start(
        *,
        intent: bool = True,
        test_guild: bool = True,
        per_minute: int = 100,
        index: FingerprintIndex | None = None,
        **adapter_kwargs: Any,
    ) -> Bot:
        config = write_config(
            tmp_path, discord_server, intent=intent, test_guild=test_guild, per_minute=per_minute
        )
        env = {
            "DISCORD_TOKEN": discord_server.token,
            "DISCORD_API_BASE": discord_server.api_base,
            "DISCORD_GATEWAY_URL": discord_server.gateway_url,
        }
        settings = load_settings(config, env)
        limits = Limits(settings.limits)
        fetcher = Fetcher(settings.fetch)
        fetchers.append(fetcher)
        service = Service(Matcher(index or memory_index), fetcher, limits, settings, executor)
        adapter_kwargs.setdefault("edit_interval_s", 0.0)
        adapter = DiscordAdapter(settings, service, **adapter_kwargs)
        bots.append(adapter)
        await adapter.start()
        await discord_server.wait_connected()
        return Bot(adapter, discord_server, tmp_path / "state", service)

    yield start
    for adapter in bots:
        await adapter.stop()
    for fetcher in fetchers:
        await fetcher.close()


def final_text(record: MessageRecord) -> str:
    return embed_text(record.payload)


def is_answer(record: MessageRecord | None) -> bool:
    """The final answer (a "Listening…" embed may already name the episode)."""
    return (
        record is not None
        and EPISODE in final_text(record)
        and "Listening" not in final_text(record)
    )


def retitled(index: FingerprintIndex, title: Callable[[Episode], str]) -> FingerprintIndex:
    """The same catalogue under other titles, as an operator's titles file would name it."""
    episodes = [dataclasses.replace(e, title=title(e)) for e in index.episodes]
    return FingerprintIndex(
        params=index.params,
        episodes=episodes,
        offsets=index.offsets,
        positions=index.positions,
        repeats=index.repeats,
    )


def is_error(record: MessageRecord) -> bool:
    embeds = record.payload["embeds"]
    return bool(embeds) and embeds[0].get("color") == discord.Colour.red().value


async def until(condition: Callable[[], Any], *, timeout_s: float = 30.0) -> None:
    """For state outside the fake (the core's): poll until true; the timeout only guards
    against a hung test."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


# ---- channel messages ----------------------------------------------------------------------------


async def test_link_for_the_bot_gets_a_reply_edited_live_to_the_answer(
    make_bot: Any, clips: ClipHost
) -> None:
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message(f"lol which one is this {clips.url()}", mention_bot=True)

    reply = await server.wait_for(
        lambda: next((r for r in server.replies_to(posted) if is_answer(r)), None),
        what="the answer as a reply",
    )
    assert reply.edits >= 2, [embed_text(v) for v in reply.history]
    assert EPISODE not in embed_text(reply.history[0])  # it started as progress
    assert reply.payload["message_reference"]["message_id"] == str(posted.id)
    assert server.calls_to("POST", r"/channels/\d+/messages$")[0].body["allowed_mentions"]


async def test_unasked_scan_shows_no_progress_before_it_names_the_episode(
    make_bot: Any, clips: ClipHost
) -> None:
    """Autoscan: nobody asked, so no "Getting the clip…" or "Listening… nothing yet" in the
    channel: this clip's noisy start keeps its reply back until the episode is known (see
    test_discord_channel_scan.py for the live reply itself)."""
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message(f"lol which one is this {clips.url()}")

    reply = await server.wait_for(
        lambda: next((r for r in server.replies_to(posted) if is_answer(r)), None)
    )
    await until(lambda: bot.service.active == 0)
    assert all(EPISODE in embed_text(v) for v in reply.history), reply.history
    assert server.bot_messages() == [reply]
    assert server.calls_to("POST", r"/channels/\d+/messages$")[0].body["allowed_mentions"]


async def test_unasked_scans_say_nothing_unless_they_found_the_episode(
    make_bot: Any, clips: ClipHost
) -> None:
    """Not found, a failed download: nothing to say to people who did not ask. The same posts
    with a mention get their answer."""
    bot = await make_bot()
    server = bot.server
    # One after the other: the core refuses a second scan by the same user while one runs.
    not_found = await server.post_message(clips.url("noise.mp4"))
    await until(lambda: "noise.mp4" in clips.hits and bot.service.active == 0)
    broken = await server.post_message(clips.url("missing.mp4"))
    await until(lambda: "missing.mp4" in clips.hits and bot.service.active == 0)
    assert server.bot_messages() == []

    asked = await server.post_message(clips.url("noise.mp4"), mention_bot=True)
    told = await server.wait_for(
        lambda: next(
            (r for r in server.replies_to(asked) if r.payload["embeds"][0]["title"] == "Not found"),
            None,
        )
    )
    assert told.edits >= 1  # asked: live progress, then the answer
    assert server.replies_to(not_found) == server.replies_to(broken) == []


async def test_unasked_scans_cost_the_user_no_quota(make_bot: Any, clips: ClipHost) -> None:
    """A scan is marked unsolicited for the core, which charges nobody for it: the poster can
    still ask for their one request this minute."""
    bot = await make_bot(per_minute=1)
    server = bot.server
    scanned = await server.post_message(clips.url())
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(scanned)))
    await until(lambda: bot.service.active == 0)

    asked = await server.post_message(clips.url(), mention_bot=True)
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(asked)))

    (scan_reply,) = server.replies_to(scanned)
    (reply,) = server.replies_to(asked)
    assert is_answer(scan_reply) and is_answer(reply)
    shown = [embed_text(version) for version in reply.history] + [final_text(reply)]
    assert not any("a lot of clips" in text for text in shown), shown


async def test_answer_is_posted_even_if_the_clip_message_was_deleted(
    make_bot: Any, clips: ClipHost
) -> None:
    """Discord refuses a reply to a deleted message unless the reference says it may be
    missing: the answer is then posted as a plain message instead of being lost."""
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message(clips.url(gated=True))
    await until(lambda: clips.hits.get("clip.mp4"))
    await server.delete_message(posted)
    clips.gate.set()

    answer = await server.wait_for(
        lambda: next((m for m in server.bot_messages() if is_answer(m)), None)
    )
    assert "message_reference" not in answer.payload
    assert answer.payload["embeds"][0]["title"].startswith(EPISODE)


async def test_a_cdn_failure_is_a_download_error_not_an_internal_one(
    make_bot: Any, clip_dir: Path
) -> None:
    bot = await make_bot()
    server = bot.server
    upload = server.upload("clip.mp4", (clip_dir / "clip.mp4").read_bytes(), "video/mp4")
    server.fail_cdn(upload, 503)
    posted = await server.post_message("which one?", attachments=(upload,), mention_bot=True)

    told = await server.wait_for(
        lambda: next((r for r in server.replies_to(posted) if is_error(r)), None),
        what="the error reply",
    )
    assert DOWNLOAD_FAILED in final_text(told)
    assert [c.status for c in server.calls_to("GET", r"^/cdn/attachments/")] == [503]


async def test_video_attachment_in_channel_is_answered(make_bot: Any, clip_dir: Path) -> None:
    bot = await make_bot()
    server = bot.server
    upload = server.upload("clip.mp4", (clip_dir / "clip.mp4").read_bytes(), "video/mp4")
    posted = await server.post_message("", attachments=(upload,))

    await server.wait_for(
        lambda: any(is_answer(r) for r in server.replies_to(posted)),
        what="answer to the attachment",
    )
    assert server.calls_to("GET", r"^/cdn/attachments/")


async def test_direct_message_is_answered(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot(intent=False)  # DMs carry content even without the intent
    server = bot.server
    posted = await server.post_message(clips.url(), dm=True)
    reply = await server.wait_for(
        lambda: next((r for r in server.replies_to(posted) if is_answer(r)), None)
    )
    assert reply.payload["channel_id"] == posted.payload["channel_id"] != str(server.channel_id)


async def test_rate_limited_user_is_told_to_slow_down(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot(per_minute=1)
    server = bot.server
    first = await server.post_message(clips.url(), mention_bot=True)
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(first)))

    asked = await server.post_message(clips.url(), mention_bot=True)
    told = await server.wait_for(lambda: server.replies_to(asked) and server.replies_to(asked)[0])
    assert "Slow down" in final_text(told)

    call = await server.invoke_slash("whichepisode", {"link": clips.url()})
    followup = await server.wait_for(lambda: call.followups and call.followups[-1])
    assert followup.payload["flags"] & EPHEMERAL and "Slow down" in final_text(followup)


async def test_a_mention_without_a_clip_gets_usage_and_quota(make_bot: Any) -> None:
    bot = await make_bot(per_minute=3)
    server = bot.server
    posted = await server.post_message("hey, what do you do?", mention_bot=True)
    told = await server.wait_for(lambda: server.replies_to(posted) and server.replies_to(posted)[0])
    assert (
        "/whichepisode" in told.payload["content"]
        and "3 more this minute" in told.payload["content"]
    )


async def test_mention_in_reply_to_someone_elses_clip(
    make_bot: Any, clips: ClipHost, discord_server: FakeDiscord, tmp_path: Path
) -> None:
    # Autoscan saved as off from an earlier run: only the mention should be answered.
    AutoscanStore(tmp_path / "state" / AUTOSCAN_FILE).set(discord_server.guild_id, False)
    bot = await make_bot()
    server = bot.server
    clip = await server.post_message(clips.url(), author=server.owner)
    question = await server.post_message("which episode?", mention_bot=True, reply_to=clip)

    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(question)))
    assert server.replies_to(clip) == []


async def test_ordinary_chat_is_left_alone(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot()
    server = bot.server
    chatter = await server.post_message("good morning everyone")
    asked = await server.post_message(f"this one {clips.url()}", mention_bot=True)
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(asked)))
    assert server.replies_to(chatter) == []


async def test_markdown_in_episode_titles_is_shown_as_written(
    make_bot: Any, clips: ClipHost, memory_index: FingerprintIndex
) -> None:
    title = "**Mr_Hankey** ||and|| `friends`"
    bot = await make_bot(index=retitled(memory_index, lambda e: title))
    server = bot.server
    posted = await server.post_message(clips.url(), mention_bot=True)

    reply = await server.wait_for(
        lambda: next((r for r in server.replies_to(posted) if is_answer(r)), None)
    )
    shown = reply.payload["embeds"][0]["title"]
    assert discord.utils.escape_markdown(title) in shown
    assert title not in shown
    post = server.calls_to("POST", r"/channels/\d+/messages$")[0]
    assert post.body["allowed_mentions"]["parse"] == []


# ---- slash command and context menu --------------------------------------------------------------


async def test_commands_are_synced_user_installable(make_bot: Any) -> None:
    bot = await make_bot(test_guild=False)
    commands = {c["name"]: c for c in bot.server.commands[None]}
    assert set(commands) == {"whichepisode", "help", CONTEXT_MENU_NAME, "citywok"}
    for name in ("whichepisode", "help", CONTEXT_MENU_NAME):
        assert sorted(commands[name]["integration_types"]) == [0, 1]
        assert sorted(commands[name]["contexts"]) == [0, 1, 2]
    assert commands[CONTEXT_MENU_NAME]["type"] == 3
    options = {o["name"]: o for o in commands["whichepisode"]["options"]}
    assert options["link"]["type"] == 3 and options["clip"]["type"] == 11
    assert not options["link"].get("required") and not options["clip"].get("required")
    citywok = commands["citywok"]
    assert citywok["default_member_permissions"] == str(MANAGE_GUILD)
    assert citywok["contexts"] == [0] and citywok["integration_types"] == [0]
    assert citywok["options"][0]["name"] == "autoscan"

    await bot.adapter.stop()  # leaves discord.py pointed at Discord again
    assert discord.http.Route.BASE == "https://discord.com/api/v10"
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"


async def test_slash_command_with_link_defers_then_answers(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot()
    server = bot.server
    call = await server.invoke_slash("whichepisode", {"link": clips.url()})

    await server.wait_for(lambda: is_answer(call.original), what="the slash answer")
    assert call.callback_type == 5 and not call.ephemeral  # "thinking…", then edited
    assert call.original is not None and call.original.edits >= 2  # stages, then the answer


async def test_slash_command_with_clip(make_bot: Any, clip_dir: Path) -> None:
    bot = await make_bot()
    server = bot.server
    upload = server.upload("clip.mp4", (clip_dir / "clip.mp4").read_bytes(), "video/mp4")
    call = await server.invoke_slash("whichepisode", {"clip": upload})
    await server.wait_for(lambda: is_answer(call.original), what="the clip answer")

    assert call.callback_type == 5 and not call.ephemeral  # "thinking…", then edited
    assert call.original is not None and call.original.edits >= 1
    assert EPISODE in final_text(call.original)


@pytest.mark.parametrize("options", ["none", "both"])
async def test_slash_command_needs_exactly_one_source(
    make_bot: Any, clip_dir: Path, options: str
) -> None:
    bot = await make_bot()
    server = bot.server
    given: dict[str, Any] = {}
    if options == "both":
        given = {
            "link": "https://www.tiktok.com/@a/video/1",
            "clip": server.upload("c.mp4", b"x", "video/mp4"),
        }
    call = await server.invoke_slash("whichepisode", given)
    await server.wait_for(lambda: call.original is not None)
    assert call.callback_type == 4 and call.ephemeral
    assert "exactly one" in call.original.payload["content"]  # type: ignore[union-attr]


async def test_context_menu_on_a_message_with_a_link(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot(intent=False)  # no autoscan: only the menu answers
    server = bot.server
    posted = await server.post_message(clips.url(), author=server.owner)
    call = await server.invoke_context_menu(CONTEXT_MENU_NAME, posted)

    await server.wait_for(lambda: is_answer(call.original), what="the menu answer")
    assert call.callback_type == 5
    assert server.replies_to(posted) == []


async def test_context_menu_on_a_message_without_media(make_bot: Any) -> None:
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message("just words")
    call = await server.invoke_context_menu(CONTEXT_MENU_NAME, posted)
    await server.wait_for(lambda: call.original is not None)
    assert call.ephemeral and "no link or video" in call.original.payload["content"]  # type: ignore[union-attr]


async def test_failed_work_is_told_ephemerally(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot()
    server = bot.server
    call = await server.invoke_slash("whichepisode", {"link": clips.url("missing.mp4")})

    followup = await server.wait_for(lambda: call.followups and call.followups[-1])
    assert followup.payload["flags"] & EPHEMERAL
    assert call.original is not None and call.original.deleted
    text = final_text(followup)
    assert text and "Traceback" not in text


# ---- autoscan ------------------------------------------------------------------------------------


async def test_autoscan_off_is_per_server_persisted_and_needs_manage_server(
    make_bot: Any, clips: ClipHost
) -> None:
    bot = await make_bot()
    server = bot.server

    refused = await server.invoke_slash("citywok", {"state": "off"}, subcommand="autoscan")
    await server.wait_for(lambda: refused.original is not None)
    assert refused.ephemeral and "manage" in refused.original.payload["content"]  # type: ignore[union-attr]

    switch = await server.invoke_slash(
        "citywok",
        {"state": "off"},
        subcommand="autoscan",
        user=server.owner,
        permissions=MANAGE_GUILD,
    )
    await server.wait_for(lambda: switch.original is not None)
    assert switch.ephemeral and "off" in switch.original.payload["content"]  # type: ignore[union-attr]
    assert AutoscanStore(bot.state_dir / AUTOSCAN_FILE).enabled(server.guild_id) is False
    assert json.loads((bot.state_dir / AUTOSCAN_FILE).read_text())["autoscan"] == {
        str(server.guild_id): False
    }

    ignored = await server.post_message(clips.url())
    asked = await server.post_message(clips.url(), mention_bot=True)
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(asked)))
    assert server.replies_to(ignored) == []


# ---- intents -------------------------------------------------------------------------------------


async def test_without_message_content_intent_mentions_and_replies_still_work(
    make_bot: Any, clips: ClipHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.adapters.discord")
    bot = await make_bot(intent=False)
    server = bot.server
    identify = next(p for p in server.gateway_log if p.get("op") == 2)
    assert not identify["d"]["intents"] & (1 << 15)

    unseen = await server.post_message(clips.url())
    mention = await server.post_message(clips.url(), mention_bot=True)
    reply = await server.wait_for(
        lambda: next((r for r in server.replies_to(mention) if is_answer(r)), None)
    )
    again = await server.post_message(f"and this? {clips.url()}", reply_to=reply)
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(again)))

    assert server.replies_to(unseen) == []
    assert [r.message for r in caplog.records].count(NO_INTENT_NOTE) == 1


async def test_intent_refused_by_discord_falls_back_to_mentions(
    discord_server: FakeDiscord,
    make_bot: Any,
    clips: ClipHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.adapters.discord")
    discord_server.grant_message_content = False
    bot = await make_bot(intent=True)
    server = bot.server
    assert server.server_closes == [4014]
    await server.wait_for(lambda: not bot.adapter.content_intent)

    mention = await server.post_message(clips.url(), mention_bot=True)
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(mention)))
    assert [r.message for r in caplog.records].count(NO_INTENT_NOTE) == 1


# ---- rate limits and reconnects ------------------------------------------------------------------


async def test_a_429_on_an_edit_is_waited_out(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot()
    server = bot.server
    server.rate_limit_message_edit(nth=1, retry_after_s=0.05)
    posted = await server.post_message(clips.url(), mention_bot=True)

    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(posted)))
    statuses = [c.status for c in server.calls_to("PATCH", r"^/channels/\d+/messages/\d+$")]
    assert statuses[0] == 429 and statuses[-1] == 200


@pytest.mark.parametrize("failures", [1, 2])
async def test_server_errors_on_the_answer_edit_still_deliver_it(
    make_bot: Any, clips: ClipHost, failures: int
) -> None:
    bot = await make_bot()
    server = bot.server
    edit = r"^/channels/\d+/messages/\d+$"
    server.fail_with("PATCH", edit, status=502, times=failures, body_contains=EPISODE)
    posted = await server.post_message(clips.url(), mention_bot=True)

    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(posted)))
    carrying = [c for c in server.calls_to("PATCH", edit) if EPISODE in json.dumps(c.body)]
    assert [c.status for c in carrying][:failures] == [502] * failures
    assert carrying[-1].status == 200
    assert len(server.replies_to(posted)) == 1  # the answer replaced the progress message


@pytest.mark.parametrize("failures", [1, 2])
async def test_server_errors_on_the_first_reply_still_show_it(
    make_bot: Any, clips: ClipHost, failures: int
) -> None:
    bot = await make_bot()
    server = bot.server
    send = r"^/channels/\d+/messages$"
    server.fail_with("POST", send, status=500, times=failures)
    posted = await server.post_message(clips.url(), mention_bot=True)

    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(posted)))
    statuses = [c.status for c in server.calls_to("POST", send)]
    assert statuses[:failures] == [500] * failures and 200 in statuses
    assert len(server.replies_to(posted)) == 1


async def test_a_long_429_becomes_retry_later(discord_server: FakeDiscord, make_bot: Any) -> None:
    """Past max_ratelimit_timeout discord.py raises instead of sleeping inside its HTTP lock;
    the target turns that into the core's RetryLater, and LiveReply (not the library) decides
    how to wait, showing the latest state afterwards."""
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message("hi", mention_bot=True)
    await server.wait_for(lambda: server.replies_to(posted))
    client = bot.adapter._client
    assert client is not None
    channel = client.get_channel(server.channel_id)
    assert isinstance(channel, discord.TextChannel)
    server.rate_limit_message_edit(nth=1, retry_after_s=120.0)
    partial = channel.get_partial_message(posted.id)
    target = MessageReplyTarget(partial, "test0001")  # type: ignore[arg-type]
    sent = Rendered(title="Listening", lines=["…"], kind="progress", ephemeral=False)
    await target.send(sent)
    with pytest.raises(RetryLater) as caught:
        await target.edit(Rendered(title="Done", lines=[], kind="answer", ephemeral=False))
    assert caught.value.after_s == pytest.approx(120.0)


async def test_gateway_disconnect_mid_request_resumes(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot()
    server = bot.server
    first = await server.post_message(clips.url(gated=True), mention_bot=True)
    await server.wait_for(lambda: server.replies_to(first), what="the first reply")

    # The request is stuck fetching (the gate is shut) while the gateway drops.
    await server.disconnect_gateway()
    # Dispatched while the socket is down: Discord replays it after RESUME.
    call = await server.invoke_slash("whichepisode", {"link": clips.url()}, user=server.owner)
    await server.wait_for(lambda: server.resume_count == 1, what="RESUME")
    clips.gate.set()

    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(first)))
    await server.wait_for(lambda: is_answer(call.original), what="answer after resume")
    assert server.identify_count == 1 and server.server_closes == [4000]
    assert any(p.get("op") == 1 for p in server.gateway_log)  # heartbeats were sent


async def test_a_fatal_gateway_close_sets_fatal(make_bot: Any) -> None:
    """The token was reset (close code 4004): discord.py gives up, and so must the process
    rather than run on serving nothing."""
    bot = await make_bot()
    assert not bot.adapter.fatal.is_set()
    await bot.server.disconnect_gateway(code=4004)
    async with asyncio.timeout(30):
        await bot.adapter.fatal.wait()


# ---- shutdown ------------------------------------------------------------------------------------


async def test_stop_lets_the_drain_tell_a_waiting_user_to_send_again(
    make_bot: Any, clips: ClipHost
) -> None:
    """stop() does not cancel a running request: the core's drain ends its stream with
    "I'm restarting", and the reply shows it."""
    bot = await make_bot()
    server = bot.server
    posted = await server.post_message(clips.url(gated=True), mention_bot=True)
    await until(lambda: clips.hits.get("clip.mp4"))
    await server.wait_for(lambda: server.replies_to(posted), what="the progress reply")

    drain = asyncio.create_task(bot.service.drain(0.2))
    await bot.adapter.stop()
    await drain

    (reply,) = server.replies_to(posted)
    assert "restarting" in final_text(reply), [embed_text(v) for v in reply.history]


async def test_stop_is_bounded_and_still_tells_the_user(make_bot: Any, clips: ClipHost) -> None:
    """Without a drain (or with a stream that does not end), stop() waits `stop_grace_s`, then
    cancels the request and says "I'm restarting" itself: never "Getting the clip…" forever."""
    bot = await make_bot(stop_grace_s=0.2)
    server = bot.server
    posted = await server.post_message(clips.url(gated=True), mention_bot=True)
    await until(lambda: clips.hits.get("clip.mp4"))
    await server.wait_for(lambda: server.replies_to(posted), what="the progress reply")

    async with asyncio.timeout(15):
        await bot.adapter.stop()

    (reply,) = server.replies_to(posted)
    assert "restarting" in final_text(reply), [embed_text(v) for v in reply.history]


async def test_at_stop_the_last_reply_is_not_held_back_by_pacing(
    make_bot: Any, clips: ClipHost, caplog: pytest.LogCaptureFixture
) -> None:
    """Edits are paced, but the app gives adapters about a second once the drain is over: the
    drain's "I'm restarting" goes out at once, nothing is cut off."""
    bot = await make_bot(edit_interval_s=30.0)
    server = bot.server
    posted = await server.post_message(clips.url(gated=True), mention_bot=True)
    await until(lambda: clips.hits.get("clip.mp4"))
    await server.wait_for(lambda: server.replies_to(posted), what="the progress reply")

    await bot.service.drain(0.0)  # every stream now has its last state
    async with asyncio.timeout(5):
        await bot.adapter.stop()

    (reply,) = server.replies_to(posted)
    assert "restarting" in final_text(reply), [embed_text(v) for v in reply.history]
    assert "cancelling" not in caplog.text


@pytest.mark.slow  # discord.py waits 5 s before identifying again, as Discord asks
async def test_invalid_session_identifies_again(make_bot: Any, clips: ClipHost) -> None:
    bot = await make_bot()
    server = bot.server
    server.invalidate_next_resume = True
    await server.disconnect_gateway()
    await server.wait_for(lambda: server.identify_count == 2 and server.connected)
    posted = await server.post_message(clips.url())
    await server.wait_for(lambda: any(is_answer(r) for r in server.replies_to(posted)))

    assert server.identify_count == 2  # a new session, not a resume of the refused one
    (reply,) = server.replies_to(posted)
    assert is_answer(reply)


# ---- the fake itself and pure pieces -------------------------------------------------------------


async def test_fake_speaks_exact_json_and_scripted_429s(discord_server: FakeDiscord) -> None:
    import aiohttp

    discord_server.rate_limit_message_edit(nth=1, retry_after_s=0.25)
    headers = {"Authorization": f"Bot {discord_server.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(discord_server.api_base + "/users/@me", headers=headers) as r:
            assert r.headers["Content-Type"] == "application/json"
        url = f"{discord_server.api_base}/channels/1/messages/2"
        async with session.patch(url, json={}, headers=headers) as r:
            assert r.status == 429 and r.headers["Via"]
            assert r.headers["X-RateLimit-Remaining"] == "0"
            assert (await r.json())["retry_after"] == 0.25


def test_embed_stays_within_discord_limits() -> None:
    timeline = [
        f'0:{i:02d}–0:{i + 1:02d} S01E0{i % 6 + 1} "{"x" * 60}" at 1:00' for i in range(400)
    ]
    embed = rendered2embed(
        Rendered(title="T" * 400, lines=timeline, kind="answer", ephemeral=False)
    )
    assert len(embed.title or "") <= 256
    assert len(embed.description or "") <= 4096
    assert (embed.description or "").splitlines()[-1].startswith("… and ")
    assert len(embed) <= 6000


def test_an_over_long_first_line_is_clipped_not_dropped() -> None:
    lines = ['0:00–0:07 S01E02 "' + "y" * 5000 + '" at 1:00', "second", "third"]
    embed = rendered2embed(Rendered(title="A compilation", lines=lines, kind="answer"))
    shown = (embed.description or "").splitlines()
    assert len(embed.description or "") <= 4096
    assert shown[0].startswith("0:00–0:07 S01E02") and shown[0].endswith("…")
    assert shown[1:] == ["… and 2 more"]
    assert len(embed) <= 6000


def test_embed_text_is_markdown_escaped() -> None:
    embed = rendered2embed(
        Rendered(
            title='S01E02 "*Pilot*"', lines=['0:00–0:07 S01E05 "Mr_Hankey" at 1:00'], kind="answer"
        )
    )
    assert embed.title == 'S01E02 "\\*Pilot\\*"'
    assert embed.description == '0:00–0:07 S01E05 "Mr\\_Hankey" at 1:00'


def test_autoscan_store_writes_atomically(tmp_path: Path) -> None:
    store = AutoscanStore(tmp_path / "state" / AUTOSCAN_FILE)
    assert store.enabled(42)
    store.set(42, False)
    store.set(7, True)
    assert not AutoscanStore(tmp_path / "state" / AUTOSCAN_FILE).enabled(42)
    assert [p.name for p in (tmp_path / "state").iterdir()] == [AUTOSCAN_FILE]
