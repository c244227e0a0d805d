"""The house rules that the folders state, checked: the core never imports a chat library, an
HTTP client or yt-dlp; the matcher never imports the bot; adapters reach links, not the fetcher."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAT_AND_NETWORK = ("discord", "telegram", "aiohttp", "yt_dlp", "httpx", "yarl", "boto3")


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Every module each file under `folder` imports, at any depth (lazy imports count)."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(folder: str, banned: tuple[str, ...]) -> list[str]:
    return [
        f"{path} imports {name}"
        for path, names in imported_modules(ROOT / folder).items()
        for name in sorted(names)
        if name.split(".")[0] in banned or any(name.startswith(b + ".") for b in banned)
    ]


@pytest.mark.parametrize(
    ("folder", "banned"),
    [
        ("bot/core", (*CHAT_AND_NETWORK, "bot.adapters", "bot.fetch")),
        ("matcher", ("bot", "bench", "tests", *CHAT_AND_NETWORK)),
        ("bot/adapters", ("bot.fetch", "yt_dlp")),
    ],
)
def test_layer_never_imports(folder: str, banned: tuple[str, ...]) -> None:
    assert offenders(folder, banned) == []


def test_the_check_sees_imports() -> None:
    """The walk itself works: the adapters do import their chat libraries."""
    assert offenders("bot/adapters", ("discord", "telegram"))
