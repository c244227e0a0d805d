"""The Discord front door (discord.py 2.7)."""

from bot.adapters.discord.running import DiscordAdapter

__all__ = ["DiscordAdapter"]
