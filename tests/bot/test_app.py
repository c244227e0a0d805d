"""`citywok run`: refuses clearly without tokens, loads the index once, starts the adapters
whose tokens are set, and stops them on SIGTERM.

Adapters here are in-memory recorders standing in for the chat platforms (the real adapters
have their own tests against fake servers); the index is a real one on disk.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from bot.app import AdaptersFailed, StartupError, run
from bot.cli import main
from bot.config import Settings, load_settings
from bot.core.request import Attachment, Request, User
from bot.core.service import Service
from bot.core.states import Failed, Fetching, State

HANG_GUARD_S = 30.0
REPO = Path(__file__).parents[2]


@pytest.fixture
def no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TELEGRAM_BOT_TOKEN", "DISCORD_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def config(tmp_path: Path, index_dir: Path, extra: str = "") -> Path:
    path = tmp_path / "citywok.toml"
    path.write_text(f'[index]\ndir = "{index_dir}"\n[matcher]\nworkers = 1\n{extra}')
    return path


def test_run_without_tokens_says_so_and_fails(
    tmp_path: Path, index_dir: Path, no_tokens: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--config", str(config(tmp_path, index_dir))]) == 1
    err = capsys.readouterr().err
    assert "no chat platform configured" in err
    assert "TELEGRAM_BOT_TOKEN" in err and "DISCORD_TOKEN" in err
    assert "Traceback" not in err


def test_run_with_a_bad_config_names_the_key(
    tmp_path: Path, index_dir: Path, no_tokens: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, index_dir, "[limits]\nper_minit = 5\n")
    assert main(["run", "--config", str(path)]) == 2
    assert "limits.per_minit" in capsys.readouterr().err


def test_run_without_an_index_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main(["run", "--config", str(config(tmp_path, tmp_path / "missing"))]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "missing") in err and "Traceback" not in err


class Recorder:
    """A chat platform stand-in: notes what it was given and when it was started/stopped."""

    def __init__(self, name: str, events: list[str], *, fail: bool = False) -> None:
        self.name, self.events, self.fail = name, events, fail
        self.args: tuple[Settings, Service] | None = None

    def factory(self, settings: Settings, service: Service) -> Recorder:
        self.args = (settings, service)
        return self

    async def start(self) -> None:
        if self.fail:
            raise ConnectionError("401 Unauthorized")
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")


def settings_with(tmp_path: Path, index_dir: Path, env: dict[str, str]) -> Settings:
    return load_settings(config(tmp_path, index_dir), env)


async def test_sigterm_stops_the_started_adapters(tmp_path: Path, index_dir: Path) -> None:
    events: list[str] = []
    telegram, discord = Recorder("telegram", events), Recorder("discord", events)
    settings = settings_with(
        tmp_path, index_dir, {"TELEGRAM_BOT_TOKEN": "1:a", "DISCORD_TOKEN": "d"}
    )
    task = asyncio.create_task(
        run(settings, adapters={"telegram": telegram.factory, "discord": discord.factory})
    )
    async with asyncio.timeout(HANG_GUARD_S):
        while len(events) < 2:
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        await task
    assert events == ["start telegram", "start discord", "stop discord", "stop telegram"]
    assert telegram.args is not None and discord.args is not None
    _, service = telegram.args
    # One index, one service (and so one set of limits), shared by both platforms.
    assert discord.args[1] is service
    assert len(service.matcher.index.episodes) == 6
    # Our handler is gone: the default one is back.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_only_platforms_with_tokens_start(tmp_path: Path, index_dir: Path) -> None:
    events: list[str] = []
    telegram, discord = Recorder("telegram", events), Recorder("discord", events)
    settings = settings_with(tmp_path, index_dir, {"DISCORD_TOKEN": "d"})
    stop = asyncio.Event()
    task = asyncio.create_task(
        run(
            settings, adapters={"telegram": telegram.factory, "discord": discord.factory}, stop=stop
        )
    )
    async with asyncio.timeout(HANG_GUARD_S):
        while not events:
            await asyncio.sleep(0.01)
        stop.set()
        await task
    assert events == ["start discord", "stop discord"]
    assert telegram.args is None


async def test_an_adapter_that_cannot_start_stops_the_others(
    tmp_path: Path, index_dir: Path
) -> None:
    events: list[str] = []
    telegram = Recorder("telegram", events)
    discord = Recorder("discord", events, fail=True)
    settings = settings_with(
        tmp_path, index_dir, {"TELEGRAM_BOT_TOKEN": "1:a", "DISCORD_TOKEN": "d"}
    )
    with pytest.raises(StartupError, match="discord bot failed to start"):
        async with asyncio.timeout(HANG_GUARD_S):
            await run(settings, adapters={"telegram": telegram.factory, "discord": discord.factory})
    assert events == ["start telegram", "stop telegram"]


async def test_no_tokens_fails_before_loading_the_index() -> None:
    with pytest.raises(StartupError, match="no chat platform configured"):
        await run(Settings())


async def test_the_real_process_serves_telegram_until_sigterm(
    tmp_path: Path, index_dir: Path
) -> None:
    """`citywok run` as an operator runs it, against the fake Telegram server."""
    from tests.fakes.telegram_server import FakeTelegramServer

    server = FakeTelegramServer()
    await server.start()
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN",)}
    env.update(
        TELEGRAM_BOT_TOKEN=server.token,
        TELEGRAM_API_BASE=server.api_base,
        TELEGRAM_FILE_BASE=server.file_base,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        "--config",
        str(config(tmp_path, index_dir)),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[str] = []
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            assert process.stderr is not None
            while not any("citywok is running (telegram)" in line for line in log):
                line = await process.stderr.readline()
                assert line, "the bot exited early:\n" + "".join(log)
                log.append(line.decode())
            process.send_signal(signal.SIGTERM)
            rest = await process.stderr.read()
            log.append(rest.decode())
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await server.close()
    text = "".join(log)
    assert "telegram bot stopped" in text and "Traceback" not in text


class Dying(Recorder):
    """A platform that can fail while running: it reports so through `fatal`."""

    def __init__(self, name: str, events: list[str]) -> None:
        super().__init__(name, events)
        self.fatal = asyncio.Event()


async def test_the_bot_stops_with_an_error_when_every_platform_has_failed(
    tmp_path: Path, index_dir: Path
) -> None:
    events: list[str] = []
    telegram, discord = Dying("telegram", events), Dying("discord", events)
    settings = settings_with(
        tmp_path, index_dir, {"TELEGRAM_BOT_TOKEN": "1:a", "DISCORD_TOKEN": "d"}
    )
    task = asyncio.create_task(
        run(settings, adapters={"telegram": telegram.factory, "discord": discord.factory})
    )
    async with asyncio.timeout(HANG_GUARD_S):
        while len(events) < 2:
            await asyncio.sleep(0.01)
        discord.fatal.set()
        for _ in range(20):  # one platform down: the other keeps serving
            await asyncio.sleep(0)
        assert not task.done()
        telegram.fatal.set()
        with pytest.raises(AdaptersFailed, match="every chat platform failed"):
            await task
    assert events[2:] == ["stop discord", "stop telegram"]
    assert isinstance(AdaptersFailed("x"), StartupError)  # `citywok run` exits 1


async def test_an_adapter_without_a_fatal_event_keeps_the_bot_up(
    tmp_path: Path, index_dir: Path
) -> None:
    events: list[str] = []
    telegram, discord = Recorder("telegram", events), Dying("discord", events)
    settings = settings_with(
        tmp_path, index_dir, {"TELEGRAM_BOT_TOKEN": "1:a", "DISCORD_TOKEN": "d"}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        run(
            settings, adapters={"telegram": telegram.factory, "discord": discord.factory}, stop=stop
        )
    )
    async with asyncio.timeout(HANG_GUARD_S):
        while len(events) < 2:
            await asyncio.sleep(0.01)
        discord.fatal.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()
        stop.set()
        await task


class Chatty(Recorder):
    """A platform with one user whose clip is still downloading when the bot is stopped; its
    `stop` waits for its handler, as the real adapters do."""

    def __init__(self, events: list[str]) -> None:
        super().__init__("telegram", events)
        self.states: list[State] = []
        self.downloading = asyncio.Event()
        self.handler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        assert self.args is not None
        service = self.args[1]

        async def read() -> bytes:
            self.downloading.set()
            await asyncio.Event().wait()  # a download that never ends
            return b""

        request = Request(
            User("telegram", "1", "u"), Attachment("a.mp4", 10, None, read), "telegram:1", "r1"
        )

        async def handle() -> None:
            async for state in service.handle(request):
                self.states.append(state)

        self.handler = asyncio.create_task(handle())

    async def stop(self) -> None:
        assert self.handler is not None
        await self.handler
        await super().stop()


async def test_stopping_ends_running_requests_with_a_restarting_answer(
    tmp_path: Path, index_dir: Path
) -> None:
    events: list[str] = []
    chat = Chatty(events)
    settings = load_settings(
        config(tmp_path, index_dir, "[app]\nshutdown_grace_s = 0\n"), {"TELEGRAM_BOT_TOKEN": "1"}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, adapters={"telegram": chat.factory}, stop=stop))
    async with asyncio.timeout(HANG_GUARD_S):
        await chat.downloading.wait()
        stop.set()
        await task
    assert events == ["start telegram", "stop telegram"]
    assert [type(s) for s in chat.states] == [Fetching, Failed]
    final = chat.states[-1]
    assert isinstance(final, Failed) and "restarting" in final.error.message
    assert chat.args is not None and chat.args[1].draining


def test_a_bad_network_in_the_config_is_named_not_a_traceback(
    tmp_path: Path, index_dir: Path, no_tokens: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, index_dir, '[fetch]\nallow_networks = ["10.0.0.0/99"]\n')
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "fetch.allow_networks" in err and "10.0.0.0/99" in err and "Traceback" not in err
