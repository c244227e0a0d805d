"""Per-server settings: where the bot scans the clips people post without being asked."""

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
    """Automatic scanning per server: on in every channel (the default), off, or on in listed
    channels only. Kept in a small JSON file written atomically (temp file + rename) so a crash
    never leaves half a file:

        {"autoscan": {"<guild>": true|false}, "channels": {"<guild>": ["<channel>", ...]}}

    A server listed under "channels" is scanned in those channels only (none, if the list is
    empty); otherwise its "autoscan" switch holds. Files written before per-channel settings
    existed have no "channels" and read the same as before."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._enabled: dict[str, bool] = {}
        self._channels: dict[str, list[str]] = {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._enabled = {str(k): bool(v) for k, v in raw.get("autoscan", {}).items()}
            self._channels = {
                str(k): [str(c) for c in v] for k, v in raw.get("channels", {}).items()
            }
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, TypeError):
            logger.exception("ignoring unreadable Discord settings file %s", path)

    def enabled(self, guild_id: int, channel_id: int | None = None) -> bool:
        """Whether to scan in this server (in this channel, when given)."""
        channels = self._channels.get(str(guild_id))
        if channels is not None:
            return channel_id is not None and str(channel_id) in channels
        return self._enabled.get(str(guild_id), True)

    def channels(self, guild_id: int) -> list[int] | None:
        """The only channels scanned in this server, or None when the server-wide switch holds."""
        channels = self._channels.get(str(guild_id))
        return None if channels is None else [int(c) for c in channels]

    def set(self, guild_id: int, enabled: bool) -> None:
        """Every channel of the server on, or none (forgetting any channel list)."""
        self._enabled[str(guild_id)] = enabled
        self._channels.pop(str(guild_id), None)
        self._save()

    def toggle_channel(self, guild_id: int, channel_id: int) -> list[int]:
        """Scan only listed channels, adding this one (or taking it off the list, if it was
        on it); returns the channels now scanned."""
        channels = self._channels.setdefault(str(guild_id), [])
        if str(channel_id) in channels:
            channels.remove(str(channel_id))
        else:
            channels.append(str(channel_id))
        self._save()
        return [int(c) for c in channels]

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".autoscan-", dir=self._path.parent)
        state = {"autoscan": self._enabled, "channels": self._channels}
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(state, out, indent=2, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
