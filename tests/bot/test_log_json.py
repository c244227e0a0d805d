"""`[log] format = "json"`: one object a line, with the request's context, still masked."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.logs import MASK, JsonFormatter, RedactSecrets, bind
from tests.bot.test_app import REPO, config

TOKEN = "7123456789:AAHx9-realistic_SecretPart0123456789"


def json_line(record: logging.LogRecord) -> dict[str, object]:
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets([TOKEN]))
    handler.setFormatter(JsonFormatter())
    handler.filter(record)
    line = handler.format(record)
    assert "\n" not in line  # one line, even with a traceback
    parsed: dict[str, object] = json.loads(line)
    return parsed


def make_record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("bot.core.service", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_time_level_logger_and_the_masked_message() -> None:
    line = json_line(make_record("polling https://api.telegram.org/bot%s/getMe", TOKEN))
    assert line["level"] == "WARNING" and line["logger"] == "bot.core.service"
    assert str(line["time"]).endswith("+00:00")
    assert TOKEN.partition(":")[2] not in str(line["message"]) and MASK in str(line["message"])


async def test_a_request_task_carries_its_context_and_requests_never_mix() -> None:
    async def request(request_id: str) -> dict[str, object]:
        bind(request_id=request_id, platform="telegram", user="u:3f2a")
        await asyncio.sleep(0)  # the other request binds meanwhile
        return json_line(make_record("fetched", stage="fetch", duration_ms=12.5))

    first, second = await asyncio.gather(request("r1"), request("r2"))
    assert first["request_id"] == "r1" and second["request_id"] == "r2"
    assert first["platform"] == "telegram" and first["user"] == "u:3f2a"
    assert first["stage"] == "fetch" and first["duration_ms"] == 12.5
    assert "request_id" not in json_line(make_record("outside any request"))


def test_a_traceback_is_one_masked_field() -> None:
    try:
        raise ConnectionError(f"cannot reach https://api.telegram.org/bot{TOKEN}/getMe")
    except ConnectionError as error:
        record = make_record("polling failed")
        record.exc_info = (type(error), error, error.__traceback__)
    line = json_line(record)
    assert "ConnectionError" in str(line["exception"])
    assert TOKEN.partition(":")[2] not in json.dumps(line)


def test_the_process_writes_json_to_stderr_when_configured(tmp_path: Path, index_dir: Path) -> None:
    path = config(tmp_path, index_dir, '[log]\nformat = "json"\n')
    script = (
        "import logging, os, sys\n"
        "from pathlib import Path\n"
        "from bot.config import load_settings\n"
        "from bot.logs import configure_logging\n"
        "settings = load_settings(Path(sys.argv[1]), os.environ)\n"
        "configure_logging(settings)\n"
        "logging.getLogger('bot.test').info('token %s', os.environ['TELEGRAM_BOT_TOKEN'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO,
        env={"TELEGRAM_BOT_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = [json.loads(text) for text in done.stderr.splitlines()]
    assert line["logger"] == "bot.test" and line["message"] == f"token {MASK}"


def test_an_unknown_log_format_is_a_config_error(tmp_path: Path, index_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"log\.format"):
        load_settings(config(tmp_path, index_dir, '[log]\nformat = "xml"\n'), {})
