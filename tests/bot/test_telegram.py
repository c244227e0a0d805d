"""End-to-end tests of the Telegram adapter: the real python-telegram-bot client against a fake
Bot API server, the real core Service and Matcher over the in-memory catalogue, real media made
with ffmpeg. Nothing of ours is mocked; the only fakes are Telegram and the web.

Every clip is 6 s of noise then 12 s of episode S01E03 from 0:40, so the matcher answers in
stages: nothing after 3 s and 5 s, the episode after 10 s, at 0:34 (where the clip starts).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import html
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import telegram

from bot.adapters.telegram.pacing import PriorityRateLimiter
from bot.adapters.telegram.running import TYPING_EVERY_S, TelegramAdapter
from bot.adapters.telegram.writing import help_html, to_html
from bot.app import run
from bot.config import Settings, load_settings
from bot.core.errors import AlreadyWorking, NotMedia, RateLimited
from bot.core.limits import Limits, Quota
from bot.core.render import Rendered, render_error
from bot.core.service import Service
from bot.fetch.fetcher import Fetcher
from bot.fetch.netguard import BLOCKED_MESSAGE
from matcher.identify import Matcher
from matcher.index import Episode, FingerprintIndex
from matcher.store import write_index
from tests.conftest import SR
from tests.fakes.media_server import serve_media
from tests.fakes.telegram_server import (
    BOT_USERNAME,
    MAX_TEXT_CHARS,
    TOKEN,
    BotMessage,
    Call,
    FakeTelegramServer,
    visible_text,
)
from tests.media import make_media

EPISODE = "S01E03"
AT = "0:34"
CLIP_START_S = 40
NOISE_S = 6
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Media


@pytest.fixture(scope="session")
def clip_samples(catalogue: list[np.ndarray]) -> np.ndarray:
    noise = np.random.default_rng(3).standard_normal(NOISE_S * SR).astype(np.float32) * 0.05
    scene = catalogue[2][CLIP_START_S * SR : (CLIP_START_S + 12) * SR]
    return np.concatenate([noise, scene])


@pytest.fixture(scope="session")
def clips(clip_samples: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The clip as users send it: an mp4 (video, GIF, video note, document), m4a, voice opus."""
    folder = tmp_path_factory.mktemp("telegram-clips")
    return {
        fmt: make_media(folder, clip_samples, SR, fmt).read_bytes()
        for fmt in ("mp4", "m4a", "opus")
    }


# ---------------------------------------------------------------------------------------------
# The bot under test


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A reply that failed quietly still fails the test: our code logs it at ERROR."""
    yield
    errors = [
        f"{r.name}: {r.getMessage()}"
        for phase in ("setup", "call", "teardown")
        for r in caplog.get_records(phase)  # type: ignore[arg-type]
        if r.levelno >= logging.ERROR and r.name.startswith("bot")
    ]
    assert not errors


@dataclass
class Harness:
    server: FakeTelegramServer
    adapter: TelegramAdapter
    settings: Settings
    service: Service

    async def reply(
        self, message: dict[str, Any], done: Callable[[str], bool], *, timeout_s: float = 30.0
    ) -> BotMessage:
        """The bot's reply to `message`, once its visible text satisfies `done`."""

        def ready() -> BotMessage | None:
            found = self.server.reply_to(message)
            return found if found is not None and done(found.text) else None

        return await self.server.wait_until(ready, timeout_s=timeout_s)

    async def answer(self, message: dict[str, Any]) -> BotMessage:
        """The final answer (a "Listening…" line may already name the episode)."""
        return await self.reply(message, lambda text: EPISODE in text and "Listening" not in text)


def write_config(
    tmp_path: Path,
    *,
    per_minute: int,
    per_day: int,
    stages_s: str = "[3.0, 5.0, 10.0]",
    allow_users: tuple[str, ...] = (),
    min_rate_grace_s: float = 5.0,
    max_concurrent: int = 2,
) -> Path:
    path = tmp_path / "citywok.toml"
    path.write_text(
        f"""
[index]
dir = "{tmp_path / "index"}"

[matcher]
workers = 2
stages_s = {stages_s}

[fetch]
timeout_s = 20
min_rate_grace_s = {min_rate_grace_s}
allow_networks = ["127.0.0.0/8"]

[limits]
per_minute = {per_minute}
per_day = {per_day}
max_concurrent = {max_concurrent}
max_queue = 50
allow_users = {list(allow_users)!r}
""".replace("'", '"'),
        encoding="utf-8",
    )
    return path


BotFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def telegram_server() -> AsyncIterator[FakeTelegramServer]:
    server = FakeTelegramServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def start_bot(
    telegram_server: FakeTelegramServer, memory_index: FingerprintIndex, tmp_path: Path
) -> AsyncIterator[BotFactory]:
    """Starts the whole Telegram side (adapter + real core) with the given limits."""
    running: list[tuple[TelegramAdapter, Fetcher, concurrent.futures.Executor]] = []

    async def start(
        *,
        per_minute: int = 100,
        per_day: int = 1000,
        paced: bool = False,
        index: FingerprintIndex | None = None,
        stages_s: str = "[3.0, 5.0, 10.0]",
        allow_users: tuple[str, ...] = (),
        min_rate_grace_s: float = 5.0,
        max_concurrent: int = 2,
        **adapter_kwargs: Any,
    ) -> Harness:
        config = write_config(
            tmp_path,
            per_minute=per_minute,
            per_day=per_day,
            stages_s=stages_s,
            allow_users=allow_users,
            min_rate_grace_s=min_rate_grace_s,
            max_concurrent=max_concurrent,
        )
        env = {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE": telegram_server.api_base,
            "TELEGRAM_FILE_BASE": telegram_server.file_base,
        }
        settings = load_settings(config, env)
        executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="test-matcher")
        fetcher = Fetcher(settings.fetch)
        limits = Limits(settings.limits)
        service = Service(Matcher(index or memory_index), fetcher, limits, settings, executor)
        # Unpaced: no delay between edits, so every state the core produces is shown (the
        # matcher takes far longer per stage than an edit to the fake). `paced`: Telegram's.
        intervals = {} if paced else {"private_interval_s": 0.0, "group_interval_s": 0.0}
        adapter = TelegramAdapter(settings, service, **intervals, **adapter_kwargs)
        await adapter.start()
        running.append((adapter, fetcher, executor))
        return Harness(telegram_server, adapter, settings, service)

    yield start
    if telegram_server.download_gate is not None:
        telegram_server.download_gate.set()
    for adapter, fetcher, executor in running:
        await adapter.stop()
        await fetcher.close()
        executor.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------
# Private chats


async def test_private_video_gets_a_live_reply_that_ends_with_the_episode(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    user = bot.server.user("Alice")
    sent = bot.server.push_private_media("video", clips["mp4"], user=user)

    reply = await bot.answer(sent)

    assert EPISODE in reply.text and AT in reply.text
    assert reply.reply_to_message_id == sent["message_id"]  # quotes the user's message
    assert reply.edits >= 2, reply.versions  # fetching → listening… → answer, in place
    first = bot.server.calls_of("sendMessage")[0]
    assert first.params["parse_mode"] == "HTML"
    assert first.params["reply_parameters"]["message_id"] == sent["message_id"]
    assert any(
        c.params["action"] == "typing" and c.params["chat_id"] == user["id"]
        for c in bot.server.calls_of("sendChatAction")
    )
    assert len(bot.server.replies_to(user["id"], sent["message_id"])) == 1


async def test_with_telegram_pacing_the_answer_still_arrives(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """Production intervals (1 s between edits in private): intermediate states may be skipped,
    the answer never is."""
    bot = await start_bot(paced=True)
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user())

    reply = await bot.answer(sent)

    assert AT in reply.text
    assert reply.versions[0] != reply.text  # sent early, then edited into the answer


@pytest.mark.parametrize(
    ("kind", "fmt", "fields"),
    [
        ("video_note", "mp4", {}),
        ("animation", "mp4", {}),
        ("audio", "m4a", {"mime_type": "audio/mp4", "file_name": "clip.m4a"}),
        ("voice", "opus", {}),
        ("document", "mp4", {"mime_type": "video/mp4", "file_name": "from-my-phone.mp4"}),
    ],
)
async def test_every_kind_of_clip_is_answered_in_private(
    start_bot: BotFactory, clips: dict[str, bytes], kind: str, fmt: str, fields: dict[str, Any]
) -> None:
    bot = await start_bot()
    sent = bot.server.push_private_media(kind, clips[fmt], user=bot.server.user(), **fields)

    reply = await bot.answer(sent)

    assert AT in reply.text


async def test_forwarded_clip_is_answered(start_bot: BotFactory, clips: dict[str, bytes]) -> None:
    bot = await start_bot()
    friend = bot.server.user("Bob")
    sent = bot.server.push_private_media(
        "video", clips["mp4"], user=bot.server.user("Alice"), forwarded_from=friend
    )

    reply = await bot.answer(sent)

    assert AT in reply.text


async def test_link_to_a_clip_is_fetched_and_answered(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    async with serve_media(clips["mp4"]) as media:
        url = media.url("/video.mp4")
        sent = bot.server.push_private_text(f"which one is this? {url}", user=bot.server.user())

        reply = await bot.answer(sent)

        assert AT in reply.text
        assert media.hits["/video.mp4"] == 1
    assert not bot.server.calls_of("getFile")


async def test_four_crawling_links_do_not_delay_an_attachment(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """Four users' links that send a few bytes a second: another user's attachment is
    downloaded and answered while they crawl, and each link is then dropped as too slow."""
    bot = await start_bot(min_rate_grace_s=8.0)
    async with serve_media(clips["mp4"]) as media:
        crawling = [
            bot.server.push_private_text(media.url("/crawl.mp4"), user=bot.server.user(f"L{i}"))
            for i in range(4)
        ]
        # Links take all download places but one (four by default): the fourth link waits.
        await bot.server.wait_until(lambda: media.hits.get("/crawl.mp4", 0) == 3)
        await bot.reply(crawling[3], lambda text: "Waiting in line" in text)
        sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user("A"))

        answer = await bot.answer(sent)

        assert AT in answer.text
        # Answered while every link still crawls: none has been dropped yet.
        assert not any(
            (reply := bot.server.reply_to(m)) is not None and "slowly" in reply.text
            for m in crawling
        )
        for message in crawling:
            refusal = await bot.reply(message, lambda text: "slowly" in text)
            assert "try again later" in refusal.text


async def test_link_to_a_private_address_is_refused_without_contacting_it(
    start_bot: BotFactory,
) -> None:
    bot = await start_bot()
    sent = bot.server.push_private_text("http://10.1.2.3/secret.mp4", user=bot.server.user())

    reply = await bot.reply(sent, lambda text: BLOCKED_MESSAGE in text)

    assert EPISODE not in reply.text
    assert not bot.server.calls_of("getFile")


async def test_corrupt_video_gets_a_clear_error(start_bot: BotFactory) -> None:
    bot = await start_bot()
    garbage = b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(5).bytes(50_000)
    sent = bot.server.push_private_media("video", garbage, user=bot.server.user())

    reply = await bot.reply(sent, lambda text: text.startswith(render_error(NotMedia()).title))

    assert EPISODE not in reply.text
    assert "Traceback" not in reply.text and "ffmpeg" not in reply.text


async def test_oversized_file_is_refused_before_downloading(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    sent = bot.server.push_private_media(
        "video", clips["mp4"], user=bot.server.user(), file_size=25 * MB
    )

    reply = await bot.reply(sent, lambda text: "20 MB" in text)

    assert "too big" in reply.text
    assert not bot.server.calls_of("getFile")
    assert not bot.server.calls_of("download")


async def test_file_telegram_refuses_to_serve_gets_the_size_message(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """No size on the message (Telegram may omit it): getFile's "file is too big" is the check."""
    bot = await start_bot()
    bot.server.download_limit_bytes = len(clips["mp4"]) - 1
    sent = bot.server.push_private_media(
        "video", clips["mp4"], user=bot.server.user(), file_size=None
    )

    reply = await bot.reply(sent, lambda text: "too big" in text)

    assert [c.status for c in bot.server.calls_of("getFile")] == [400]
    assert not bot.server.calls_of("download")
    assert EPISODE not in reply.text


async def test_text_without_a_link_gets_a_hint(start_bot: BotFactory) -> None:
    bot = await start_bot()
    sent = bot.server.push_private_text("hello there", user=bot.server.user())

    reply = await bot.reply(sent, lambda text: "/help" in text)

    assert "Send me" in reply.text


async def test_help_explains_what_to_send_and_shows_the_quota(start_bot: BotFactory) -> None:
    bot = await start_bot(per_minute=5, per_day=100)
    user = bot.server.user()
    chat = bot.server.private_chat(user)

    for command in ("start", "help"):
        sent = bot.server.push_command(command, user=user, chat=chat)
        reply = await bot.reply(sent, lambda text: "this minute" in text)
        assert "video" in reply.text and "link" in reply.text
        assert "5 more this minute (of 5) and 100 more today (of 100)" in reply.text
    assert {c["command"] for c in bot.server.commands} >= {"whichepisode", "help", "start"}


async def test_help_tells_an_exempt_user_they_have_no_limit(
    start_bot: BotFactory, telegram_server: FakeTelegramServer
) -> None:
    """People on `allow_users` skip the quota, and /help says so instead of "5 left"."""
    user = telegram_server.user()
    bot = await start_bot(per_minute=5, per_day=100, allow_users=(f"telegram:{user['id']}",))

    sent = bot.server.push_command("help", user=user, chat=bot.server.private_chat(user))
    reply = await bot.reply(sent, lambda text: "limit" in text or "this minute" in text)
    assert "no request limit" in reply.text and "this minute" not in reply.text


# ---------------------------------------------------------------------------------------------
# Groups (privacy mode on: the fake delivers only what Telegram would)


async def test_group_clip_with_a_mention_is_answered(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    sent = bot.server.post_group_media(
        "video", clips["mp4"], user=bot.server.user(), caption=f"@{BOT_USERNAME} which one?"
    )

    reply = await bot.answer(sent)

    assert AT in reply.text
    assert reply.chat_id == sent["chat"]["id"]


async def test_group_clip_captioned_with_the_command_is_answered(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    sent = bot.server.post_group_media(
        "animation", clips["mp4"], user=bot.server.user(), caption=f"/whichepisode@{BOT_USERNAME}"
    )

    reply = await bot.answer(sent)

    assert AT in reply.text


async def test_reply_to_a_clip_mentioning_the_bot_is_answered(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    clip = bot.server.post_group_media("video", clips["mp4"], user=bot.server.user("Alice"))
    ask = bot.server.push_reply_mention(clip, user=bot.server.user("Bob"))

    reply = await bot.answer(ask)

    assert AT in reply.text
    assert not bot.server.reply_to(clip)  # the answer quotes the one who asked


async def test_whichepisode_as_a_reply_and_with_a_link(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    clip = bot.server.post_group_media("video", clips["mp4"], user=bot.server.user("Alice"))
    as_reply = bot.server.push_whichepisode(user=bot.server.user("Bob"), reply_to=clip)
    assert AT in (await bot.answer(as_reply)).text

    async with serve_media(clips["mp4"]) as media:
        with_link = bot.server.push_whichepisode(
            user=bot.server.user("Carol"), args=media.url("/video.mp4")
        )
        assert AT in (await bot.answer(with_link)).text


async def test_reply_to_the_bot_with_a_clip_is_answered(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    user = bot.server.user("Alice")
    first = bot.server.push_whichepisode(user=user)
    hint = await bot.reply(first, lambda text: "/whichepisode" in text)

    obj = bot.server.media("video", clips["mp4"])
    original = bot.server.chat_messages[(hint.chat_id, hint.message_id)]
    again = bot.server.message(original["chat"], user, reply_to=original, media={"video": obj})
    assert bot.server.deliver(again)

    reply = await bot.answer(again)
    assert AT in reply.text


async def test_group_messages_not_for_the_bot_are_ignored(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """Even without privacy mode, a clip nobody asked about gets no reply."""
    bot = await start_bot()
    bot.server.privacy_mode = False
    ignored = bot.server.post_group_media("video", clips["mp4"], user=bot.server.user())
    asked = bot.server.push_group_mention(user=bot.server.user(), text="hi")

    await bot.reply(asked, lambda text: "mention me" in text)

    assert bot.server.reply_to(ignored) is None
    assert not bot.server.calls_of("getFile")


async def test_no_typing_indicator_in_groups(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """Chat actions count against a group's 20 messages a minute, which the answer needs."""
    bot = await start_bot()
    sent = bot.server.post_group_media(
        "video", clips["mp4"], user=bot.server.user(), caption=f"@{BOT_USERNAME} which one?"
    )

    await bot.answer(sent)

    assert not bot.server.calls_of("sendChatAction")


# ---------------------------------------------------------------------------------------------
# Long answers, lost messages

LONG_TITLE = "Fish & <Chips> " + "and more " * 240  # ~2 200 characters: two lines overflow


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


@pytest.fixture(scope="session")
def compilation(catalogue: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Four 7 s scenes from four episodes, cut together: a timeline of several lines."""
    scenes = [catalogue[e][60 * SR : 67 * SR] for e in (1, 2, 3, 4)]
    folder = tmp_path_factory.mktemp("telegram-compilation")
    return make_media(folder, np.concatenate(scenes), SR, "mp4").read_bytes()


async def test_a_timeline_too_long_for_telegram_is_cut_to_fit(
    start_bot: BotFactory, compilation: bytes, memory_index: FingerprintIndex
) -> None:
    """Over 4096 characters Telegram refuses the edit: the answer drops whole lines, says how
    many, and arrives."""
    # One stage for the whole clip: the matcher stops at the first stage it is certain of,
    # and a timeline needs the whole clip heard.
    bot = await start_bot(index=retitled(memory_index, lambda e: LONG_TITLE), stages_s="[60.0]")
    sent = bot.server.push_private_media("video", compilation, user=bot.server.user())

    reply = await bot.reply(sent, lambda text: text.startswith("A compilation"))

    lines = reply.text.splitlines()
    assert len(reply.text.encode("utf-16-le")) // 2 <= MAX_TEXT_CHARS
    assert lines[1].startswith("0:00") and "Fish & <Chips>" in lines[1]
    assert lines[-1].startswith("… and ") and lines[-1].endswith(" more")
    assert all(c.ok for c in bot.server.calls_of("editMessageText"))


async def test_answer_is_sent_anew_if_the_progress_message_was_deleted(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """The user deleted "Getting the clip…": the edit carrying the answer finds no message,
    so the answer comes as a new message quoting the clip."""
    bot = await start_bot()
    bot.server.download_gate = asyncio.Event()
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user())
    progress = await bot.reply(sent, lambda text: bool(text))
    await bot.server.wait_for(lambda c: c.method == "download")

    bot.server.delete_message(progress.chat_id, progress.message_id)
    bot.server.download_gate.set()
    reply = await bot.answer(sent)

    assert AT in reply.text and reply.message_id != progress.message_id
    assert reply.edits == 0
    assert len(bot.server.replies_to(sent["chat"]["id"], sent["message_id"])) == 1


# ---------------------------------------------------------------------------------------------
# Shutdown and fatal errors


async def test_stop_lets_the_drain_tell_a_waiting_user_to_send_again(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """stop() does not cut off a running request: the core's drain ends it with "I'm
    restarting", and the reply shows it."""
    bot = await start_bot()
    bot.server.download_gate = asyncio.Event()
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user())
    await bot.reply(sent, lambda text: bool(text))
    await bot.server.wait_for(lambda c: c.method == "download")

    drain = asyncio.create_task(bot.service.drain(0.2))
    await bot.adapter.stop()
    await drain

    reply = bot.server.reply_to(sent)
    assert reply is not None and "restarting" in reply.text, reply


async def test_stop_is_bounded_and_still_tells_the_user(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """Without a drain (or with a stream that does not end), stop() waits `stop_grace_s`, then
    cancels the request and says "I'm restarting" itself: never "Getting the clip…" forever."""
    bot = await start_bot(stop_grace_s=0.2)
    bot.server.download_gate = asyncio.Event()
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user())
    await bot.reply(sent, lambda text: bool(text))
    await bot.server.wait_for(lambda c: c.method == "download")

    async with asyncio.timeout(15):
        await bot.adapter.stop()

    reply = bot.server.reply_to(sent)
    assert reply is not None and "restarting" in reply.text, reply


async def test_a_failed_last_poll_at_stop_logs_one_line_not_a_traceback(
    start_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """PTB's last getUpdates at stop (marking updates read) fails on a busy machine; that is
    harmless and must not put a stack trace in the operator's log."""
    bot = await start_bot()
    bot.server.script_error(
        "getUpdates",
        status=502,
        description="Bad Gateway",
        when=lambda params: str(params.get("timeout")) in ("0", "0.0"),
    )
    with caplog.at_level(logging.DEBUG):
        await bot.adapter.stop()

    assert bot.server.calls_of("getUpdates")[-1].params.get("timeout") in (0, "0", 0.0)
    cleanup = [r for r in caplog.records if "mark the last updates" in r.getMessage()]
    assert [r.levelno for r in cleanup] == [logging.WARNING]
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("telegram"))
    assert "Traceback" not in caplog.text


async def test_at_stop_the_last_reply_is_not_held_back_by_pacing(
    start_bot: BotFactory, clips: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """Group edits are paced seconds apart, but the app gives adapters about a second once the
    drain is over: the drain's "I'm restarting" goes out at once, nothing is cut off."""
    bot = await start_bot(paced=True, group_interval_s=30.0)
    bot.server.download_gate = asyncio.Event()
    sent = bot.server.post_group_media(
        "video", clips["mp4"], user=bot.server.user(), caption=f"@{BOT_USERNAME} which one?"
    )
    await bot.reply(sent, lambda text: bool(text))
    await bot.server.wait_for(lambda c: c.method == "download")

    await bot.service.drain(0.0)  # every stream now has its last state
    async with asyncio.timeout(5):
        await bot.adapter.stop()

    reply = bot.server.reply_to(sent)
    assert reply is not None and "restarting" in reply.text, reply
    assert "cancelling" not in caplog.text


async def test_a_revoked_token_sets_fatal(
    start_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """PTB's polling gives up on InvalidToken and tells no one: `fatal` must."""
    bot = await start_bot()
    await bot.server.wait_for(lambda c: c.method == "getUpdates")
    assert not bot.adapter.fatal.is_set()

    bot.server.revoke_token()

    async with asyncio.timeout(30):
        await bot.adapter.fatal.wait()
    assert "Telegram bot is off" in caplog.text
    caplog.clear()  # the one error this test expects


async def test_a_lasting_polling_conflict_sets_fatal(
    start_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process polls with our token: with no grace configured, the first conflict is
    fatal (the default waits a minute, as a restart overlaps briefly)."""
    bot = await start_bot(conflict_fatal_s=0.0)
    bot.server.script_conflict()

    async with asyncio.timeout(30):
        await bot.adapter.fatal.wait()
    assert "another process keeps polling" in caplog.text
    caplog.clear()


# ---------------------------------------------------------------------------------------------
# Limits and Telegram's errors


async def test_rate_limited_user_is_told_when_to_come_back(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot(per_minute=1, per_day=100)
    user = bot.server.user()
    first = bot.server.push_private_media("video", clips["mp4"], user=user)
    await bot.answer(first)

    second = bot.server.push_private_media("video", clips["mp4"], user=user)
    slow_down = render_error(RateLimited(60)).title
    reply = await bot.reply(second, lambda text: text.startswith(slow_down))

    assert EPISODE not in reply.text
    assert len(bot.server.calls_of("getFile")) == 1  # the refused clip was never downloaded
    other = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user("Bob"))
    await bot.answer(other)  # limits are per user


def carries_the_answer(params: dict[str, Any]) -> bool:
    text = str(params.get("text", ""))
    return EPISODE in text and "Listening" not in text


def answer_edits(server: FakeTelegramServer) -> list[Call]:
    return [c for c in server.calls_of("editMessageText") if carries_the_answer(c.params)]


async def test_flood_control_on_the_final_edit_is_waited_out(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """429 on the edit that carries the answer: the adapter reports "retry later" to the core,
    which waits as long as Telegram asked and delivers the answer after all."""
    bot = await start_bot()
    bot.server.script_retry_after("editMessageText", retry_after_s=1, when=carries_the_answer)
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user())

    reply = await bot.answer(sent)

    assert AT in reply.text
    assert [c.status for c in answer_edits(bot.server)] == [429, 200]
    assert len(bot.server.replies_to(sent["chat"]["id"], sent["message_id"])) == 1


@pytest.mark.parametrize("failures", [[500], [502, 502]])
async def test_server_errors_on_the_final_edit_still_deliver_the_answer(
    start_bot: BotFactory, clips: dict[str, bytes], failures: list[int]
) -> None:
    """A 5xx (or two in a row) on the edit that carries the answer: retried with backoff, so
    the user never stays on "Listening…"."""
    bot = await start_bot()
    for status in failures:
        bot.server.script_error(
            "editMessageText", status=status, description="Bad Gateway", when=carries_the_answer
        )
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user())

    reply = await bot.answer(sent)

    assert AT in reply.text
    assert [c.status for c in answer_edits(bot.server)] == [*failures, 200]
    assert len(bot.server.replies_to(sent["chat"]["id"], sent["message_id"])) == 1


async def test_two_server_errors_on_the_first_message_still_show_the_reply(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    bot = await start_bot()
    for _ in range(2):
        bot.server.script_error("sendMessage", status=502, description="Bad Gateway")
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user())

    reply = await bot.answer(sent)

    assert AT in reply.text
    assert [c.status for c in bot.server.calls_of("sendMessage")][:3] == [502, 502, 200]


async def test_message_not_modified_counts_as_delivered(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """Telegram refuses an edit that changes nothing; the adapter takes it as delivered: no
    retry, no second message, no error logged (the autouse check below)."""
    bot = await start_bot()
    bot.server.script_not_modified(when=carries_the_answer)
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user())

    reply = await bot.answer(sent)
    await bot.server.wait_for(lambda c: c.method == "editMessageText" and c.status == 400)

    assert AT in reply.text
    assert [c.status for c in answer_edits(bot.server)] == [400]
    assert len(bot.server.replies_to(sent["chat"]["id"], sent["message_id"])) == 1


class PausableClock:
    """Monotonic time that can stand still: a rate limiter on it hands out no tokens then."""

    def __init__(self) -> None:
        self.paused_at: float | None = None

    def __call__(self) -> float:
        return time.monotonic() if self.paused_at is None else self.paused_at


async def test_a_first_reply_goes_ahead_of_progress_edits_waiting_in_line(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """A call line full of progress edits: a newcomer's first reply is served before every
    one of them (answers, as urgent, may go first), and every answer still arrives."""
    clock = PausableClock()
    limiter = PriorityRateLimiter(per_second=4, clock=clock)
    bot = await start_bot(rate_limiter=limiter)
    crowd = [
        bot.server.push_private_media("video", clips["mp4"], user=bot.server.user(f"U{i}"))
        for i in range(8)
    ]
    firsts = lambda: len(bot.server.calls_of("sendMessage"))  # noqa: E731
    await bot.server.wait_until(lambda: firsts() >= len(crowd) and limiter.waiting >= 3)
    clock.paused_at = time.monotonic()  # the line stands still, and fills
    newcomer = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user("New"))
    await bot.server.wait_until(lambda: newcomer["chat"]["id"] in limiter.waiting_chats())
    served_before = len(bot.server.calls)
    clock.paused_at = None
    await bot.server.wait_until(lambda: firsts() > len(crowd))
    first_reply = next(
        i
        for i, c in enumerate(bot.server.calls)
        if c.method == "sendMessage" and c.params["chat_id"] == newcomer["chat"]["id"]
    )
    paced = {"sendMessage", "editMessageText", "sendChatAction"}  # calls that wait in line
    ahead = [c for c in bot.server.calls[served_before:first_reply] if c.method in paced]
    assert all(c.method == "editMessageText" and EPISODE in c.params["text"] for c in ahead), [
        (c.method, c.params.get("text", c.params.get("action")), c.params.get("chat_id"))
        for c in ahead
    ]
    for message in [*crowd, newcomer]:
        await bot.answer(message)


async def test_ten_minutes_of_noise_do_not_hold_up_another_users_clip(
    start_bot: BotFactory, clips: dict[str, bytes], tmp_path: Path
) -> None:
    """One match slot: a long noise file is heard window by window, gives its turn to a clip
    sent meanwhile, and still gets its own answer in the end."""
    noise = np.random.default_rng(11).standard_normal(600 * SR).astype(np.float32) * 0.1
    long_file = make_media(tmp_path, noise, SR, "opus").read_bytes()
    bot = await start_bot(max_concurrent=1)
    sent_long = bot.server.push_private_media("audio", long_file, user=bot.server.user("Long"))
    # Past the early stages, into the windows (the first one ends at 0:30).
    await bot.reply(sent_long, lambda text: bool(re.search(r"Listening… \d+:\d\d of 10:00", text)))
    sent = bot.server.push_private_media("video", clips["mp4"], user=bot.server.user("Short"))

    await bot.answer(sent)

    long_reply = bot.server.reply_to(sent_long)
    assert long_reply is not None and "Listening" in long_reply.text  # still being heard
    final = await bot.reply(sent_long, lambda text: "Listening" not in text, timeout_s=60.0)
    assert EPISODE not in final.text


async def test_ten_clips_at_once_get_one_answer_and_one_refusal_not_ten_replies(
    start_bot: BotFactory, clips: dict[str, bytes]
) -> None:
    """One user's flood: the first clip is answered, the next hears "one at a time" once, and
    the rest get no reply of their own (one refusal of a kind per window, not one per message:
    a flood of 300 once sent 39 replies a second into the user's own chat)."""
    bot = await start_bot(per_minute=100, per_day=1000)
    user = bot.server.user()
    sent = [bot.server.push_private_media("video", clips["mp4"], user=user) for _ in range(10)]
    one_at_a_time = render_error(AlreadyWorking()).title

    await bot.answer(sent[0])  # handled first: its update came first
    await bot.server.wait_until(lambda: not bot.service.limits.running)
    replies = [r for m in sent if (r := bot.server.reply_to(m)) is not None]
    answers = [r for r in replies if EPISODE in r.text]
    refusals = [r for r in replies if r.text.startswith(one_at_a_time)]
    assert len(answers) >= 1 and len(refusals) == 1
    assert len(replies) == len(answers) + len(refusals) < len(sent)
    # One "typing…" per chat per indicator lifetime, not one per request.
    typing = [c.time for c in bot.server.calls_of("sendChatAction")]
    assert typing
    assert all(b - a >= TYPING_EVERY_S - 0.5 for a, b in itertools.pairwise(typing))


# ---------------------------------------------------------------------------------------------
# The whole process


async def test_citywok_run_serves_telegram_and_stops_cleanly(
    telegram_server: FakeTelegramServer,
    memory_index: FingerprintIndex,
    clips: dict[str, bytes],
    tmp_path: Path,
) -> None:
    """`bot.app.run` as `citywok run` calls it: index from disk, the real adapter picked by the
    token, a clip answered, then a clean stop."""
    index_dir = tmp_path / "index"
    write_index(
        index_dir,
        params=memory_index.params,
        episodes=memory_index.episodes,
        offsets=memory_index.offsets,
        positions=memory_index.positions,
    )
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE": telegram_server.api_base,
        "TELEGRAM_FILE_BASE": telegram_server.file_base,
    }
    settings = load_settings(write_config(tmp_path, per_minute=5, per_day=100), env)
    stop = asyncio.Event()
    running = asyncio.create_task(run(settings, stop=stop))
    try:
        await telegram_server.wait_for(lambda c: c.method == "getUpdates")
        sent = telegram_server.push_private_media(
            "video", clips["mp4"], user=telegram_server.user()
        )
        reply = await telegram_server.wait_until(
            lambda: (r := telegram_server.reply_to(sent)) is not None and EPISODE in r.text and r
        )
        assert AT in reply.text
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)


# ---------------------------------------------------------------------------------------------
# The fake itself, driven by the real client: what the adapter tests rely on


async def test_fake_confirms_updates_by_offset_and_applies_privacy_mode(
    telegram_server: FakeTelegramServer,
) -> None:
    server = telegram_server
    user = server.user()
    async with telegram.Bot(TOKEN, base_url=server.api_base, base_file_url=server.file_base) as tg:
        assert tg.username == BOT_USERNAME
        first = server.push_private_text("one", user=user)
        # Privacy mode: a clip and chatter that don't address the bot never reach it.
        server.post_group_media("video", b"clip", user=user)
        server.push_group_text("chatter", user=user)
        mention = server.push_group_mention(user=user, text="hi")

        updates = await tg.get_updates(timeout=1)
        assert [u.message.message_id for u in updates if u.message] == [
            first["message_id"],
            mention["message_id"],
        ]
        assert await tg.get_updates(timeout=1) == updates  # not confirmed yet
        assert await tg.get_updates(offset=updates[-1].update_id + 1, timeout=1) == ()

        sent = await tg.send_message(user["id"], "<b>a &amp; b</b>", parse_mode="HTML")
        with pytest.raises(telegram.error.BadRequest, match="not modified"):
            await sent.edit_text("<b>a &amp; b</b>", parse_mode="HTML")
        with pytest.raises(telegram.error.BadRequest, match="parse entities"):
            await sent.edit_text("a < b & c", parse_mode="HTML")
    assert server.bot_messages[(user["id"], sent.message_id)].text == "a & b"


# ---------------------------------------------------------------------------------------------
# Rendering (pure)


def test_html_is_escaped_and_accepted_by_telegram() -> None:
    rendered = Rendered(
        title='S01E02 "Fish & <Chips>"',
        lines=["0:00–0:07 at 3:10", "a <b>tag</b> & more"],
        kind="answer",
        ephemeral=False,
    )
    text = to_html(rendered)

    assert visible_text(text, "HTML") == (
        'S01E02 "Fish & <Chips>"\n0:00–0:07 at 3:10\na <b>tag</b> & more'
    )
    assert text.startswith("<b>") and html.escape("<Chips>") in text


def test_a_long_timeline_fits_telegram_with_a_count_of_the_rest() -> None:
    timeline = [f'0:{i:02d}–0:{i + 1:02d} S01E0{i % 6 + 1} "{"x" * 80}" at 1:00' for i in range(80)]
    text = visible_text(to_html(Rendered("A compilation: 80 clips", timeline, "answer")), "HTML")

    lines = text.splitlines()
    assert len(text) <= MAX_TEXT_CHARS
    assert lines[1] == timeline[0]
    kept = len(lines) - 2
    assert lines[-1] == f"… and {80 - kept} more"


def test_a_single_over_long_line_is_clipped_not_dropped() -> None:
    lines = ["y" * 5000, "second"]
    text = visible_text(to_html(Rendered("T", lines, "answer")), "HTML")
    shown = text.splitlines()
    assert len(text) <= MAX_TEXT_CHARS
    assert shown[1].startswith("yyy") and shown[1].endswith("…")
    assert shown[2] == "… and 1 more"


def test_help_for_an_unlimited_user() -> None:
    text = help_html(Quota(5, 100, exempt=True), max_download_mb=20)
    assert "no request limit" in visible_text(text, "HTML")
