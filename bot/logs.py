"""Logging for `citywok run`: one format, quiet HTTP clients, and no secret in any line.

Two guards, because one slip costs a bot token: the HTTP client loggers that write request
URLs (the Telegram Bot API puts the token in every URL; Discord puts interaction tokens in
webhook URLs) are held at WARNING, and a filter on every handler masks each configured secret,
and anything shaped like a bot token, in the message, its arguments and its traceback.

Must never: log a secret at any level, or drop a line (a masked line is still written).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from bot.config import Settings

MASK = "[redacted]"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Secrets from the environment besides the chat tokens: S3 credentials for index publishing.
SECRET_ENV_NAMES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")
# Shorter strings are not masked: they would mask ordinary words (tests use tokens like "1:a").
MIN_SECRET_CHARS = 6
# Loggers that write request URLs or whole gateway payloads at INFO or DEBUG.
CHATTY_LOGGERS = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "urllib3": logging.WARNING,
    "aiohttp.access": logging.WARNING,
    "aiohttp.client": logging.WARNING,
    "botocore": logging.WARNING,
    "boto3": logging.WARNING,
    "discord.http": logging.WARNING,
    "discord.gateway": logging.INFO,
}
# A bot token wherever it appears, configured or not: Telegram's `123456:AA…` (also inside
# `/bot123456:AA…/` URLs) and Discord's webhook and interaction tokens in URL paths.
TOKEN_PATTERNS = (
    re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}"),
    re.compile(r"(?<=/webhooks/)(\d+)/[A-Za-z0-9._-]{20,}"),
    re.compile(r"(?<=/interactions/)(\d+)/[A-Za-z0-9._-]{20,}"),
)


class RedactSecrets(logging.Filter):
    """Masks `secrets` (and their URL-encoded forms) and token-shaped strings in a record.

    The record is formatted here, once, so that arguments and the traceback are masked too;
    handlers then print the masked text as it is."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        forms = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_CHARS:
                forms.update({secret, quote(secret, safe="")})
                # The half after a Telegram token's colon is the secret part on its own.
                _, _, tail = secret.partition(":")
                if len(tail) >= MIN_SECRET_CHARS:
                    forms.add(tail)
        self._secrets = sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern in TOKEN_PATTERNS:
            text = pattern.sub(lambda m: f"{m.group(1)}/{MASK}" if m.groups() else MASK, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        # Formatters print `exc_text` when it is set instead of formatting `exc_info` again.
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


# What the line is about, for JSON logs: set once per request task (`bind`), read by every
# line logged in it. A task copies the context it was created in, so requests never mix.
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("citywok_log")
# Fields a line may carry (from `bind`, or `extra=` on the call), in the order written.
CONTEXT_FIELDS = ("request_id", "platform", "user", "stage", "duration_ms")


def bind(**fields: Any) -> None:
    """Attach `fields` (see CONTEXT_FIELDS) to every later line of the current task."""
    _CONTEXT.set({**_CONTEXT.get({}), **fields})


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the request's
    context fields when known, and the traceback as one string. Runs after RedactSecrets, so
    what it writes is already masked."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _CONTEXT.get({})
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = context.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


def secrets_of(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Every secret this process knows: the chat tokens and the S3 credentials."""
    found = [settings.telegram.token, settings.discord.token]
    found += [environ.get(name) for name in SECRET_ENV_NAMES]
    return [secret for secret in found if secret]


def configure_logging(settings: Settings, environ: Mapping[str, str] = os.environ) -> None:
    """Set up the root logger for the bot: level from `[log] level`, lines as `[log] format`
    says (text or JSON), chatty HTTP loggers held back, and the secrets filter on every
    handler (ours, and any a host program added)."""
    root = logging.getLogger()
    if not root.handlers:
        stderr = logging.StreamHandler(sys.stderr)
        json_lines = settings.log.format == "json"
        stderr.setFormatter(JsonFormatter() if json_lines else logging.Formatter(LOG_FORMAT))
        root.addHandler(stderr)
    root.setLevel(settings.log.level.upper())
    for name, level in CHATTY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, root.level))
    redact = RedactSecrets(secrets_of(settings, environ))
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redact)
