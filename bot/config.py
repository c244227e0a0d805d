"""Settings for `citywok run`: a TOML file for everything but secrets, the environment for those.

Tokens come only from the environment (`TELEGRAM_BOT_TOKEN`, `DISCORD_TOKEN`), so a config file
can be committed or pasted into a bug report. API base URLs can be overridden from the
environment too (`TELEGRAM_API_BASE`, `TELEGRAM_FILE_BASE`, `DISCORD_API_BASE`,
`DISCORD_GATEWAY_URL`): that is how tests point the real clients at local fakes.

Every key is checked: an unknown section or key, or a value of the wrong type, is a
`ConfigError` naming it (a typo such as `per_minit` must not silently leave the default on).
Relative paths are relative to the config file's folder, not to wherever the bot was started.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 1024 * 1024

SECRET_ENV = {"telegram": "TELEGRAM_BOT_TOKEN", "discord": "DISCORD_TOKEN"}
URL_ENV = {
    ("telegram", "api_base"): "TELEGRAM_API_BASE",
    ("telegram", "file_base"): "TELEGRAM_FILE_BASE",
    ("discord", "api_base"): "DISCORD_API_BASE",
    ("discord", "gateway_url"): "DISCORD_GATEWAY_URL",
}


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class IndexSettings:
    dir: Path = Path("index")
    # s3://bucket/prefix: pulled into `dir` at start-up when set (see bot.ops.remote_index).
    remote: str | None = None
    remote_endpoint_url: str | None = None


@dataclass(frozen=True)
class MatcherSettings:
    ffmpeg: str | None = None
    # Threads for decoding and matching; each match keeps one core busy.
    workers: int = 2
    stages_s: tuple[float, ...] = (3.0, 5.0, 10.0)
    decode_timeout_s: float = 60.0
    # CPU seconds one request's matching may spend. A long clip is heard in windows until this
    # is spent and the answer says how much was heard; a 10 s clip needs about 0.3.
    budget_cpu_s: float = 10.0


@dataclass(frozen=True)
class FetchSettings:
    max_bytes: int = 50_000_000
    max_duration_s: float = 600.0
    timeout_s: float = 60.0
    fetch_workers: int = 4
    # A download averaging less than this since it started, once past the grace, is dropped so
    # a trickling link frees its slot. 16 kB/s (about 130 kbit/s) is far below any CDN or phone
    # upload, and far above a link dripping a few bytes a second to hold a slot for timeout_s.
    min_rate_bytes_per_s: int = 16_000
    min_rate_grace_s: float = 5.0
    # CIDR strings the network guard lets through (tests: "127.0.0.0/8"); empty in production.
    allow_networks: tuple[str, ...] = ()
    # Hosts treated as direct-media hosts (tests).
    extra_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitSettings:
    per_minute: int = 5
    per_day: int = 100
    # Matches running at once (decode + fingerprint + search), and matches allowed to wait.
    max_concurrent: int = 2
    max_queue: int = 50
    # Admitted requests allowed to download at once (links and attachments alike). Bytes held
    # in memory stay under (max_downloads + max_concurrent) * fetch.max_bytes however long the
    # queue; the rest of the queue waits without downloading.
    max_downloads: int = 4
    # "telegram:123", "discord:456": exempt from the per-user limits (not from the queue).
    allow_users: tuple[str, ...] = ()


@dataclass(frozen=True)
class TelegramSettings:
    token: str | None = None
    api_base: str | None = None
    file_base: str | None = None
    # The public Bot API serves files up to 20 MB; a local Bot API server lifts that.
    max_download_bytes: int = 20 * MB


@dataclass(frozen=True)
class DiscordSettings:
    token: str | None = None
    api_base: str | None = None
    gateway_url: str | None = None
    # Commands sync instantly to this guild (development); globally otherwise.
    test_guild_id: int | None = None
    message_content_intent: bool = True
    # Per-server settings the adapter keeps (autoscan on/off).
    state_dir: Path = Path("state")


@dataclass(frozen=True)
class AppSettings:
    # On SIGTERM, running requests get this long to finish before they are told "I'm
    # restarting". Kept below Docker's default 10 s stop timeout, with room for the adapters
    # to deliver those last replies.
    shutdown_grace_s: float = 5.0


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    # "text" for people reading a terminal; "json" (one object a line) for a log collector.
    format: str = "text"


@dataclass(frozen=True)
class Settings:
    index: IndexSettings = field(default_factory=IndexSettings)
    matcher: MatcherSettings = field(default_factory=MatcherSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    log: LogSettings = field(default_factory=LogSettings)
    app: AppSettings = field(default_factory=AppSettings)


# Keys that must be positive when given (zero would switch a feature off by accident).
_POSITIVE = {
    "matcher.workers",
    "matcher.decode_timeout_s",
    "matcher.budget_cpu_s",
    "fetch.max_bytes",
    "fetch.max_duration_s",
    "fetch.timeout_s",
    "fetch.fetch_workers",
    "fetch.min_rate_bytes_per_s",
    "fetch.min_rate_grace_s",
    "limits.per_minute",
    "limits.per_day",
    "limits.max_concurrent",
    "limits.max_downloads",
    "telegram.max_download_bytes",
}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("text", "json")


def load_settings(path: Path | None, env: Mapping[str, str] = os.environ) -> Settings:
    """Settings from the TOML file at `path` (defaults alone when None) plus the environment.

    Raises `ConfigError` for a missing or malformed file, an unknown key, a wrong type, or a
    secret written into the file.
    """
    data: dict[str, Any] = {}
    base = Path.cwd()
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        base = path.resolve().parent
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read it ({e})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from None
    sections: dict[str, Any] = {}
    for name, value in data.items():
        cls = _section_class(name, where)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
        sections[name] = _section(cls, name, value, where=where, base=base)
    settings = Settings(**sections)
    settings = _apply_env(settings, env)
    _check(settings, where)
    return settings


def _section_class(name: str, where: str) -> type[Any]:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if name not in fields:
        raise ConfigError(f"{where}: unknown section [{name}]{_did_you_mean(name, fields)}")
    return typing.get_type_hints(Settings)[name]


def _section(
    cls: type[Any], section: str, values: dict[str, Any], *, where: str, base: Path
) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{section}.{key}"
        if section in SECRET_ENV and key == "token":
            raise ConfigError(
                f"{where}: {name} does not belong in the config file; set the "
                f"{SECRET_ENV[section]} environment variable instead"
            )
        if key not in known:
            raise ConfigError(f"{where}: unknown key {name}{_did_you_mean(key, known)}")
        kwargs[key] = _convert(value, hints[key], name=name, where=where, base=base)
    return cls(**kwargs)


def _convert(value: Any, hint: Any, *, name: str, where: str, base: Path) -> Any:
    """`value` from TOML as the field's type, or a ConfigError saying what was expected."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType):
        # `X | None`: TOML has no null, so a present value is always an X.
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, name=name, where=where, base=base)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {name} must be a list")
        return tuple(_convert(v, args[0], name=name, where=where, base=base) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name} must be a whole number, not {value!r}")
        return value
    if hint is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{where}: {name} must be a number, not {value!r}")
        return float(value)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {name} must be a path (a string)")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {name} must be a string, not {value!r}")
        return value
    raise AssertionError(f"no conversion for {hint!r}")  # a field type this module forgot


def _apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    def get(var: str) -> str | None:
        value = env.get(var, "").strip()
        return value or None

    telegram = dataclasses.replace(settings.telegram, token=get(SECRET_ENV["telegram"]))
    discord = dataclasses.replace(settings.discord, token=get(SECRET_ENV["discord"]))
    for (section, key), var in URL_ENV.items():
        if (value := get(var)) is None:
            continue
        override: dict[str, Any] = {key: value}
        if section == "telegram":
            telegram = dataclasses.replace(telegram, **override)
        else:
            discord = dataclasses.replace(discord, **override)
    return dataclasses.replace(settings, telegram=telegram, discord=discord)


def _check(settings: Settings, where: str) -> None:
    for name in _POSITIVE:
        section, key = name.split(".")
        if getattr(getattr(settings, section), key) <= 0:
            raise ConfigError(f"{where}: {name} must be greater than 0")
    if settings.limits.max_queue < 0:
        raise ConfigError(f"{where}: limits.max_queue must be 0 or more")
    if settings.app.shutdown_grace_s < 0:
        raise ConfigError(f"{where}: app.shutdown_grace_s must be 0 or more")
    for cidr in settings.fetch.allow_networks:
        try:
            # As the network guard reads it (host bits allowed), so what loads here works there.
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(
                f"{where}: fetch.allow_networks entry {cidr!r} is not a network such as "
                '"127.0.0.0/8" or "::1/128"'
            ) from None
    if not settings.matcher.stages_s or any(s <= 0 for s in settings.matcher.stages_s):
        raise ConfigError(f"{where}: matcher.stages_s must list positive numbers of seconds")
    for entry in settings.limits.allow_users:
        platform, _, user_id = entry.partition(":")
        if platform not in SECRET_ENV or not user_id:
            raise ConfigError(
                f"{where}: limits.allow_users entry {entry!r} must look like "
                '"telegram:123" or "discord:456"'
            )
    if settings.log.level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"{where}: log.level must be one of {', '.join(_LOG_LEVELS)}")
    if settings.log.format not in _LOG_FORMATS:
        raise ConfigError(f"{where}: log.format must be one of {', '.join(_LOG_FORMATS)}")


def _did_you_mean(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
