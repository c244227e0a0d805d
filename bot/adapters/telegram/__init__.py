"""The Telegram front door (python-telegram-bot 22)."""

from bot.adapters.telegram.running import TelegramAdapter

__all__ = ["TelegramAdapter"]
