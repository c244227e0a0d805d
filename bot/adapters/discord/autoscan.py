"""Per-server settings: whether the bot scans every clip posted in a server."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

AUTOSCAN_FILE = "discord-autoscan.json"


class AutoscanStore:
    """Per-guild automatic scanning switch (default on), kept in a small JSON file written
    atomically (temp file + rename) so a crash never leaves half a file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._enabled: dict[str, bool] = {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._enabled = {str(k): bool(v) for k, v in raw.get("autoscan", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError):
            logger.exception("ignoring unreadable Discord settings file %s", path)

    def enabled(self, guild_id: int) -> bool:
        return self._enabled.get(str(guild_id), True)

    def set(self, guild_id: int, enabled: bool) -> None:
        self._enabled[str(guild_id)] = enabled
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".autoscan-", dir=self._path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"autoscan": self._enabled}, out, indent=2, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
