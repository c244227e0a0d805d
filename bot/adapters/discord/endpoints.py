"""Pointing discord.py at another server (a REST proxy, or the fake Discord in tests)."""

from __future__ import annotations

import discord
import yarl


class Endpoints:
    """discord.py reads its REST base and gateway URL from class attributes. Set them while
    this adapter runs and put the previous values back on stop, so tests (or a second client)
    do not inherit them."""

    def __init__(self, api_base: str | None, gateway_url: str | None) -> None:
        self._api_base = api_base.rstrip("/") if api_base else None
        self._gateway = yarl.URL(gateway_url) if gateway_url else None
        self._saved: tuple[str, yarl.URL] | None = None

    def apply(self) -> None:
        ws = discord.gateway.DiscordWebSocket
        self._saved = (discord.http.Route.BASE, ws.DEFAULT_GATEWAY)
        if self._api_base:
            discord.http.Route.BASE = self._api_base
        if self._gateway:
            ws.DEFAULT_GATEWAY = self._gateway

    def restore(self) -> None:
        if self._saved is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None
