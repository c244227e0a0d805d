"""Config: TOML for settings, environment for secrets, every key checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "config" / "citywok.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "citywok.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_file_loads_and_matches_the_defaults() -> None:
    settings = load_settings(EXAMPLE, {})
    defaults = Settings()
    assert settings.matcher == defaults.matcher
    assert settings.fetch == defaults.fetch
    assert settings.limits == defaults.limits
    assert settings.telegram == defaults.telegram
    assert settings.index.dir == EXAMPLE.parent / "index"


def test_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[index]
dir = "/srv/citywok/index"
[matcher]
workers = 3
stages_s = [2, 4.5]
[fetch]
allow_networks = ["127.0.0.0/8"]
timeout_s = 20
[limits]
per_minute = 7
allow_users = ["telegram:42", "discord:7"]
[discord]
test_guild_id = 123
message_content_intent = false
[app]
shutdown_grace_s = 5
""",
    )
    settings = load_settings(path, {})
    assert settings.index.dir == Path("/srv/citywok/index")
    assert settings.matcher.workers == 3
    assert settings.matcher.stages_s == (2.0, 4.5)
    assert settings.fetch.allow_networks == ("127.0.0.0/8",)
    assert settings.fetch.timeout_s == 20.0 and isinstance(settings.fetch.timeout_s, float)
    assert settings.limits.per_minute == 7 and settings.limits.per_day == 100
    assert settings.limits.allow_users == ("telegram:42", "discord:7")
    assert settings.discord.test_guild_id == 123
    assert settings.discord.message_content_intent is False
    assert settings.app.shutdown_grace_s == 5.0
    assert Settings().app.shutdown_grace_s < 10  # under Docker's default stop timeout


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[index]\ndir = "data/index"\n')
    assert load_settings(path, {}).index.dir == tmp_path / "data" / "index"


def test_secrets_and_urls_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": "123:abc",
        "DISCORD_TOKEN": "  ",
        "TELEGRAM_API_BASE": "http://127.0.0.1:9/bot",
        "DISCORD_GATEWAY_URL": "ws://127.0.0.1:9/",
    }
    settings = load_settings(write(tmp_path, ""), env)
    assert settings.telegram.token == "123:abc"
    assert settings.discord.token is None  # blank means unset
    assert settings.telegram.api_base == "http://127.0.0.1:9/bot"
    assert settings.discord.gateway_url == "ws://127.0.0.1:9/"
    assert load_settings(None, {}).telegram.token is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[limits]\nper_minit = 5\n", "limits.per_minit (did you mean per_minute?)"),
        ("[limit]\nper_minute = 5\n", "[limit] (did you mean limits?)"),
        ("[fetch]\nproxy = 'x'\n", "unknown key fetch.proxy"),
    ],
)
def test_unknown_keys_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text), {})
    assert named in str(error.value)
    assert str(tmp_path / "citywok.toml") in str(error.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[limits]\nper_minute = "5"\n', "limits.per_minute must be a whole number"),
        ("[limits]\nper_minute = true\n", "limits.per_minute must be a whole number"),
        ("[limits]\nper_minute = 0\n", "limits.per_minute must be greater than 0"),
        ('[fetch]\ntimeout_s = "fast"\n', "fetch.timeout_s must be a number"),
        ("[matcher]\nstages_s = 3\n", "matcher.stages_s must be a list"),
        ("[matcher]\nstages_s = []\n", "matcher.stages_s"),
        ('[discord]\nmessage_content_intent = "yes"\n', "must be true or false"),
        ('[limits]\nallow_users = ["42"]\n', "allow_users entry '42'"),
        ('[log]\nlevel = "loud"\n', "log.level"),
        ("limits = 3\n", "[limits] must be a table"),
        ('[fetch]\nallow_networks = ["127.0.0.0/33"]\n', "allow_networks entry '127.0.0.0/33'"),
        ('[fetch]\nallow_networks = ["localhost"]\n', "allow_networks entry 'localhost'"),
        ("[limits]\nmax_downloads = 0\n", "limits.max_downloads must be greater than 0"),
        (
            "[fetch]\nmin_rate_bytes_per_s = 0\n",
            "fetch.min_rate_bytes_per_s must be greater than 0",
        ),
        ("[fetch]\nmin_rate_grace_s = 0\n", "fetch.min_rate_grace_s must be greater than 0"),
        ("[app]\nshutdown_grace_s = -1\n", "app.shutdown_grace_s must be 0 or more"),
    ],
)
def test_wrong_values_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text), {})
    assert named in str(error.value)


def test_a_token_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, '[telegram]\ntoken = "123:abc"\n'), {})
    assert "TELEGRAM_BOT_TOKEN" in str(error.value)
    assert "123:abc" not in str(error.value)


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[limits\n"), {})
