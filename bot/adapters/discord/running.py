"""Discord adapter: a discord.py 2.7 client and its command tree, running in the bot's own loop.

It turns Discord messages and interactions into our `Request`s, runs them through the core
`Service`, and shows the stream of states as one live reply (a message reply edited in place, or
an interaction's original response) rendered as an embed from `bot.core.render.render_state`.

Entry points for users:
- a link or a video/audio attachment posted in a channel where automatic scanning is on (per
  server or per channel, `/citywok autoscan on|off|channel`, needs Manage Server; needs the
  message-content intent): acknowledged at once with a reaction, answered live but quietly
  (`QuietScan`), and left alone if the bot has nothing sure to say;
- a message that mentions the bot or replies to it (works without the intent), or any DM;
- `/whichepisode link:<url>` or `/whichepisode clip:<file>` (user-installable);
- the message context menu "Which episode?" (user-installable).

Must never: let a discord.py type leave this module, block the event loop, show a stack trace
to a user, or let one slow edit (429) hold up other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands

from bot.adapters.base import (
    STOP_GRACE_S,
    QuietScan,
    finish_work,
    say_restarting,
    stop_aware_pacing,
    without_repeated_refusals,
)
from bot.adapters.discord.autoscan import AUTOSCAN_FILE, AutoscanStore
from bot.adapters.discord.endpoints import Endpoints
from bot.adapters.discord.reading import (
    attachment2source,
    discord_user,
    message_sources,
    refused_links,
)
from bot.adapters.discord.writing import InteractionTarget, MessageReplyTarget, rendered2embed
from bot.config import Settings
from bot.core.errors import Internal
from bot.core.help import quota_lines, render_help
from bot.core.live import LiveReply
from bot.core.render import render_state
from bot.core.request import Attachment, Link, Request, new_request_id
from bot.core.service import Service
from bot.core.states import Failed
from bot.links import supported_sites

logger = logging.getLogger(__name__)

# Discord allows about 5 edits per 5 s per channel; one per 1.2 s per message leaves headroom
# for a second request in the same channel.
EDIT_INTERVAL_S = 1.2
# discord.py sleeps through 429s shorter than this and raises `RateLimited` for longer ones,
# which we turn into the core's RetryLater so LiveReply can drop stale edits (30 s is the
# library's minimum).
MAX_RATELIMIT_TIMEOUT_S = 30.0
CONTEXT_MENU_NAME = "Which episode?"
# The reaction that tells someone who posted a clip the bot is listening to it: a quiet
# acknowledgement, taken off again when the scan ends (the reply, if any, says the rest).
SEEN_EMOJI = "\N{EYES}"
NO_INTENT_NOTE = (
    "Discord message content intent is off (message_content_intent = false, or not enabled "
    "for this application in the Developer Portal → Bot → Privileged Gateway Intents): "
    "automatic scanning of channel messages is OFF. Mentions, replies to the bot, DMs, "
    '/whichepisode and the "Which episode?" menu still work.'
)
# ---- the adapter ---------------------------------------------------------------------------------


class DiscordAdapter:
    """Runs one discord.py client in the caller's loop. `start()` logs in (so a bad token fails
    at once) and connects in a background task; `stop()` lets running requests finish (bounded),
    then ends the connection.

    `fatal` is set when the gateway connection ended for good without `stop()` (token reset,
    intents refused, …): the process serves nothing here any more, and `bot.app.run` exits when
    every adapter is in that state.
    """

    def __init__(
        self,
        settings: Settings,
        service: Service,
        *,
        edit_interval_s: float = EDIT_INTERVAL_S,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self._settings = settings
        self._discord = settings.discord
        self._service = service
        self._edit_interval_s = edit_interval_s
        self._token: str = self._discord.token or ""
        self._endpoints = Endpoints(self._discord.api_base, self._discord.gateway_url)
        self._autoscan = AutoscanStore(self._discord.state_dir / AUTOSCAN_FILE)
        self._content_intent = bool(self._discord.message_content_intent)
        self._client: discord.Client | None = None
        self._runner: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[Any]] = set()
        self._told_no_intent = False
        self._extra_hosts = tuple(settings.fetch.extra_hosts)
        self._stop_grace_s = stop_grace_s
        self._stopped = asyncio.Event()  # set when stop() begins: pacing waits end at once
        self.fatal = asyncio.Event()

    # -- lifecycle

    @property
    def content_intent(self) -> bool:
        """Whether the gateway granted (and we asked for) the message-content intent."""
        return self._content_intent

    async def start(self) -> None:
        self._endpoints.apply()
        try:
            self._client = self._build_client()
            await self._client.login(self._token)
        except BaseException:
            await self._close_client()
            self._endpoints.restore()
            raise
        if not self._content_intent:
            self._note_no_intent()
        self._runner = asyncio.create_task(self._connect(), name="discord-gateway")

    async def stop(self) -> None:
        """Running requests first get `stop_grace_s` to deliver their last state (the core's
        drain ends them with "I'm restarting"); what is left is cancelled (and told so, briefly),
        then the client closes. Once the stop begins, edits are no longer paced, so after a
        drain the last replies go out at once. If the caller's timeout is shorter, the client
        still closes."""
        self._stopped.set()
        try:
            await finish_work(self._work, self._stop_grace_s, "discord")
        finally:
            # Even when the caller's own timeout cuts the wait short: close the connection.
            for task in list(self._work):
                task.cancel()
            await self._close_client()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        self._endpoints.restore()

    async def _close_client(self) -> None:
        if self._client is not None and not self._client.is_closed():
            await self._client.close()

    async def _connect(self) -> None:
        """Keep the gateway connected until `stop()`. A fatal gateway error (bad token, intents
        refused, …) switches the Discord side off: logged, and `fatal` set so that the process
        does not carry on serving nothing."""
        try:
            await self._connect_until_closed()
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._stopped.is_set():
                return
            logger.exception("Discord gateway connection ended; the Discord bot is off")
            self.fatal.set()
            return
        if not self._stopped.is_set():
            logger.error("Discord gateway connection closed; the Discord bot is off")
            self.fatal.set()

    async def _connect_until_closed(self) -> None:
        """If Discord refuses the message-content intent (close code 4014: not enabled in the
        portal), carry on without it rather than not at all."""
        while True:
            client = self._client
            assert client is not None
            try:
                await client.connect(reconnect=True)
                return
            except discord.PrivilegedIntentsRequired:
                if not self._content_intent:
                    raise
            self._content_intent = False
            self._note_no_intent()
            await client.close()
            self._client = self._build_client()
            await self._client.login(self._token)

    def _note_no_intent(self) -> None:
        if not self._told_no_intent:
            self._told_no_intent = True
            logger.warning(NO_INTENT_NOTE)

    def _build_client(self) -> discord.Client:
        intents = discord.Intents.default()
        intents.message_content = self._content_intent
        # Members and presences are not needed: no chunking, a smaller gateway stream.
        intents.members = False
        intents.presences = False
        client = discord.Client(
            intents=intents,
            max_ratelimit_timeout=MAX_RATELIMIT_TIMEOUT_S,
            allowed_mentions=discord.AllowedMentions.none(),
            chunk_guilds_at_startup=False,
        )
        tree = app_commands.CommandTree(client)
        self._add_commands(tree)
        tree.on_error = self._on_tree_error  # type: ignore[method-assign]

        async def setup_hook() -> None:
            await self._sync(tree)

        client.setup_hook = setup_hook  # type: ignore[method-assign]
        client.event(self._make_on_message(client))
        return client

    async def _sync(self, tree: app_commands.CommandTree[Any]) -> None:
        """Register the commands: on the test guild at once if configured, else globally
        (global changes can take a while to show in clients)."""
        guild_id = self._discord.test_guild_id
        try:
            if guild_id:
                guild = discord.Object(id=int(guild_id))
                tree.copy_global_to(guild=guild)
                synced = await tree.sync(guild=guild)
            else:
                synced = await tree.sync()
        except discord.HTTPException as error:
            logger.error(
                "could not sync Discord commands (%s %s); was the bot invited with "
                "the applications.commands scope?",
                error.status,
                error.text,
            )
            return
        logger.info(
            "synced %d Discord commands %s",
            len(synced),
            f"to guild {guild_id}" if guild_id else "globally",
        )

    # -- commands

    def _add_commands(self, tree: app_commands.CommandTree[Any]) -> None:
        anywhere = app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
        any_install = app_commands.allowed_installs(guilds=True, users=True)

        @tree.command(name="whichepisode", description="Which episode is this clip from?")
        @app_commands.describe(
            link="A link to the clip (TikTok, Instagram, YouTube, X, …)",
            clip="A video or audio file",
        )
        @anywhere
        @any_install
        async def whichepisode(
            interaction: discord.Interaction,
            link: str | None = None,
            clip: discord.Attachment | None = None,
        ) -> None:
            await self._on_slash(interaction, link, clip)

        @tree.command(name="help", description="What this bot does and how many requests you have")
        @anywhere
        @any_install
        async def help_command(interaction: discord.Interaction) -> None:
            await self._on_help(interaction)

        @tree.context_menu(name=CONTEXT_MENU_NAME)
        @anywhere
        @any_install
        async def which_episode_menu(
            interaction: discord.Interaction, message: discord.Message
        ) -> None:
            await self._on_menu(interaction, message)

        group = app_commands.Group(
            name="citywok",
            description="CityWok settings for this server",
            default_permissions=discord.Permissions(manage_guild=True),
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=False, private_channel=False
            ),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
        )

        @group.command(
            name="autoscan", description="Answer clips posted in this server without being asked"
        )
        @app_commands.describe(
            state="on: every channel; off: none; channel: add or remove this channel only"
        )
        async def autoscan(
            interaction: discord.Interaction, state: Literal["on", "off", "channel"]
        ) -> None:
            await self._on_autoscan(interaction, state)

        tree.add_command(group)

    async def _on_slash(
        self,
        interaction: discord.Interaction,
        link: str | None,
        clip: discord.Attachment | None,
    ) -> None:
        link = (link or "").strip() or None
        if (link is None) == (clip is None):
            await interaction.response.send_message(
                "Give me exactly one thing to look at: either `link` or `clip`.", ephemeral=True
            )
            return
        source = Link(link) if link is not None else attachment2source(clip)  # type: ignore[arg-type]
        await self._answer_interaction(interaction, source)

    async def _on_help(self, interaction: discord.Interaction) -> None:
        quota = self._service.quota(discord_user(interaction.user))
        rendered = render_help(quota, how_to=_HOW_TO, when=_discord_time)
        await interaction.response.send_message(embed=rendered2embed(rendered), ephemeral=True)

    async def _on_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        sources = self._sources(message) or self._refused(message)
        if not sources:
            await interaction.response.send_message(
                "That message has no link or video I can listen to.", ephemeral=True
            )
            return
        await self._answer_interaction(interaction, sources[0])

    async def _on_autoscan(
        self, interaction: discord.Interaction, state: Literal["on", "off", "channel"]
    ) -> None:
        # Discord enforces Manage Server by default, but server admins can change who sees the
        # command; the switch itself stays with people who manage the server.
        guild_id = interaction.guild_id
        if guild_id is None or not interaction.permissions.manage_guild:
            await interaction.response.send_message(
                "Only people who can manage this server can change automatic scanning.",
                ephemeral=True,
            )
            return
        if state == "channel":
            channel_id = _scan_channel_id(interaction.channel) or interaction.channel_id or 0
            text = _channels_text(self._autoscan.toggle_channel(guild_id, channel_id))
        else:
            self._autoscan.set(guild_id, state == "on")
            text = (
                "Automatic scanning is **on** in every channel: I'll answer every clip posted here."
                if state == "on"
                else "Automatic scanning is **off**: mention me, reply to me, or use /whichepisode."
            )
        if state != "off" and not self._content_intent:
            text += (
                " (I can't read messages in this server without the message content "
                "intent, so for now I only answer mentions and replies.)"
            )
        await interaction.response.send_message(text, ephemeral=True)

    async def _answer_interaction(
        self, interaction: discord.Interaction, source: Link | Attachment
    ) -> None:
        # Acknowledge first: Discord drops interactions not answered within 3 s.
        await interaction.response.defer(thinking=True)
        request = Request(
            id=new_request_id(),
            user=discord_user(interaction.user),
            source=source,
            chat_key=f"discord:{interaction.channel_id or interaction.user.id}",
            unsolicited=False,
        )
        target = InteractionTarget(interaction, request.id)
        await self._run(request, target)

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Last handler for command failures: log with an id, tell the user without a trace."""
        error_id = new_request_id()
        logger.error("Discord command failed (error id %s)", error_id, exc_info=error)
        message = Internal(error_id).message
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(message, ephemeral=True)
            else:
                await interaction.response.send_message(message, ephemeral=True)

    # -- channel messages

    def _make_on_message(
        self, client: discord.Client
    ) -> Callable[[discord.Message], Coroutine[Any, Any, None]]:
        async def on_message(message: discord.Message) -> None:
            await self._on_message(client, message)

        return on_message

    async def _on_message(self, client: discord.Client, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None or client.user is None:
            return
        asked = self._is_addressed(client, message)
        scanning = (
            not self._stopped.is_set()
            and message.guild is not None
            and self._content_intent
            and self._autoscan.enabled(message.guild.id, _scan_channel_id(message.channel))
        )
        if not (asked or scanning):
            return
        sources = self._sources(message)
        referenced = message.reference.resolved if message.reference else None
        if not sources and asked and isinstance(referenced, discord.Message):
            # "@CityWok which episode?" in reply to someone else's clip.
            sources = self._sources(referenced)
        if not sources and asked:
            # A link the bot cannot open: the core says why, in the same words everywhere.
            sources = self._refused(message)
            if not sources and isinstance(referenced, discord.Message):
                sources = self._refused(referenced)
        if not sources:
            if asked:
                await self._reply_text(message, self._usage(message.author))
            return
        request = Request(
            id=new_request_id(),
            user=discord_user(message.author),
            source=sources[0],
            chat_key=f"discord:{message.channel.id}",
            unsolicited=not asked,
        )
        target = MessageReplyTarget(message, request.id)
        if asked:
            await self._run(request, target)
        else:
            await self._scan(request, message, target)

    async def _scan(
        self, request: Request, message: discord.Message, target: MessageReplyTarget
    ) -> None:
        """A clip nobody asked about: a reaction at once, so the poster knows it is being
        looked at; a reply only once there is an answer worth showing, edited live; and
        nothing left behind when there is none."""
        seen = await self._react(message, request.id)
        quiet = QuietScan(request.id)
        try:
            await self._run(request, target, quiet=quiet)
        finally:
            if quiet.retract:
                await target.retract()
            if seen:
                await self._unreact(message)

    @staticmethod
    async def _react(message: discord.Message, request_id: str) -> bool:
        """Whether the reaction is on: without Add Reactions (403), the scan goes on quietly."""
        try:
            await message.add_reaction(SEEN_EMOJI)
        except discord.HTTPException as error:
            logger.info(
                "request %s: cannot react on Discord (%s %s)", request_id, error.status, error.text
            )
            return False
        return True

    async def _unreact(self, message: discord.Message) -> None:
        me = self._client.user if self._client is not None else None
        if me is None:
            return
        with contextlib.suppress(discord.HTTPException):
            await message.remove_reaction(SEEN_EMOJI, me)

    def _sources(self, message: discord.Message) -> list[Link | Attachment]:
        return message_sources(message, extra_hosts=self._extra_hosts)

    def _refused(self, message: discord.Message) -> list[Link | Attachment]:
        return [*refused_links(message, extra_hosts=self._extra_hosts)]

    @staticmethod
    def _is_addressed(client: discord.Client, message: discord.Message) -> bool:
        """DMs, mentions and replies that ping the bot: all visible without the intent."""
        if message.guild is None:
            return True
        return client.user is not None and client.user in message.mentions

    def _usage(self, author: discord.abc.User) -> str:
        quota = self._service.quota(discord_user(author))
        limit = " ".join(quota_lines(quota, when=_discord_time))
        return (
            f"Send me a link ({supported_sites()}) or a video and I'll tell you which episode "
            f"it's from; /whichepisode works too, and /help says more. {limit}"
        )

    @staticmethod
    async def _reply_text(message: discord.Message, text: str) -> None:
        with contextlib.suppress(discord.HTTPException):
            await message.channel.send(
                text,
                reference=message.to_reference(fail_if_not_exists=False),
                mention_author=False,
            )

    # -- running one request

    async def _run(
        self,
        request: Request,
        target: InteractionTarget | MessageReplyTarget,
        *,
        quiet: QuietScan | None = None,
    ) -> None:
        """Show the request's states as one live reply; `quiet` for a scan nobody asked for."""
        asked = quiet is None
        task = asyncio.current_task()
        if task is not None:
            self._work.add(task)
        logger.info(
            "request %s: discord %s from %s",
            request.id,
            type(request.source).__name__.lower(),
            request.user.key,
        )
        try:
            states = self._service.handle(request)
            if quiet is not None:
                states = quiet.states(states)
            elif isinstance(target, MessageReplyTarget):
                # A slash command must be answered, privately; a message reply need not.
                states = without_repeated_refusals(states, request.id)
            pacing = stop_aware_pacing(self._edit_interval_s, self._stopped)
            live = LiveReply(target, min_interval_s=self._edit_interval_s, sleep=pacing)
            await live.run(states, render_state)
        except asyncio.CancelledError:
            # Cut off by stop(): the core did not get to say so; say it ourselves (not to
            # people who did not ask).
            if asked and not target.final_shown:
                await say_restarting(
                    target, render_state, request.id, platform_errors=_PLATFORM_ERRORS
                )
            raise
        except Exception:
            logger.exception("request %s: Discord reply failed", request.id)
            if asked:
                with contextlib.suppress(Exception):
                    await target.edit(
                        render_state(Failed(error=Internal(request.id), request_id=request.id))
                    )
        finally:
            if task is not None:
                self._work.discard(task)


# How people ask on Discord: /help's own part, beside the core's shared words.
_HOW_TO = (
    f"• Paste a {supported_sites()} link or a video where I scan, or mention me with one "
    "(or in a reply to one).",
    "• /whichepisode with a link or a video file, in any server, DM or group DM.",
    f'• On any message with a clip: ⋯ → Apps → "{CONTEXT_MENU_NAME}".',
    "• Or send me a direct message.",
)


def _discord_time(seconds: float) -> str:
    """A wait as Discord shows it: a timestamp every client renders as "in 42 seconds", in
    the reader's own language."""
    return f"<t:{math.ceil(time.time() + seconds)}:R>"


def _scan_channel_id(channel: Any) -> int | None:
    """The channel whose autoscan setting applies: a thread follows its parent channel."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return getattr(channel, "id", None)


def _channels_text(channels: list[int]) -> str:
    if not channels:
        return (
            "Automatic scanning is **off** in every channel now. `/citywok autoscan channel` "
            "in a channel turns it on there; `on` turns it on everywhere."
        )
    listed = ", ".join(f"<#{channel}>" for channel in channels)
    return (
        f"Automatic scanning is **on** only in {listed}. The same command in a listed "
        "channel turns it off there; `on` turns it on everywhere."
    )


# What a reply target raises when Discord cannot take a message.
_PLATFORM_ERRORS = (discord.DiscordException, aiohttp.ClientError)


__all__ = ["DiscordAdapter"]
