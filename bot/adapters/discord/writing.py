"""Writing to Discord: a rendered state as an embed within Discord's limits, and the two
places a live reply goes (a message reply, an interaction's response)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from bot.adapters.base import action_payload
from bot.core.live import RetryLater, TransientFailure, never_overtaken
from bot.core.render import LinkButton, Rendered, clip_text, fit_lines

logger = logging.getLogger(__name__)

COLOURS = {
    "progress": discord.Colour.blurple(),
    "answer": discord.Colour.green(),
    "unsure": discord.Colour.gold(),
    "not_found": discord.Colour.light_grey(),
    "error": discord.Colour.red(),
}
TITLE_LIMIT, DESCRIPTION_LIMIT = 256, 4096
# Discord: 5 rows of 5 buttons, labels of 80 characters, link buttons' URLs up to 512.
MAX_BUTTONS, BUTTON_LABEL_LIMIT, MAX_LINK_CHARS = 25, 80, 512
BUTTON_STYLES = {
    "right": discord.ButtonStyle.success,
    "wrong": discord.ButtonStyle.danger,
    "candidates": discord.ButtonStyle.primary,
}


# ---- rendering -----------------------------------------------------------------------------------


def rendered2embed(rendered: Rendered) -> discord.Embed:
    """An embed within Discord's limits (title 256, description 4096, 6000 in all). Long
    timelines lose whole lines from the end, with a count of what was left out.

    Rendered text is plain: markdown in it (an episode title from the operator's titles file
    such as `*Pilot*` or `Mr_Hankey`) is escaped so that it shows as written."""
    lines = [discord.utils.escape_markdown(line) for line in rendered.lines]
    lines = [_linked(line, url) for line, url in zip(lines, _links(rendered), strict=True)]
    description = "\n".join(fit_lines(lines, DESCRIPTION_LIMIT))
    title = discord.utils.escape_markdown(rendered.title)
    return discord.Embed(
        title=clip_text(title, TITLE_LIMIT) or None,
        description=description or None,
        colour=COLOURS.get(rendered.kind, discord.Colour.default()),
    )


def _links(rendered: Rendered) -> list[str]:
    links = list(rendered.links[: len(rendered.lines)])
    return links + [""] * (len(rendered.lines) - len(links))


def _linked(line: str, url: str) -> str:
    """A masked link (`[text](<url>)`; the angle brackets keep Discord from unfurling it)."""
    if not url or len(url) > MAX_LINK_CHARS:
        return line
    text = line.replace("]", "\\]")
    return f"[{text}](<{url}>)"


def rendered2view(rendered: Rendered) -> discord.ui.View | None:
    """The reply's buttons as message components: link buttons open the watch page, action
    buttons carry their payload as the custom id (see `action_payload`). None: no buttons,
    and an edit then removes any the message had."""
    if not rendered.buttons:
        return None
    view = discord.ui.View(timeout=None)
    for button in rendered.buttons[:MAX_BUTTONS]:
        item: discord.ui.Button[discord.ui.View]
        if isinstance(button, LinkButton):
            item = discord.ui.Button(
                label=clip_text(button.label, BUTTON_LABEL_LIMIT), url=button.url
            )
        else:
            item = discord.ui.Button(
                label=clip_text(button.label, BUTTON_LABEL_LIMIT),
                custom_id=action_payload(button),
                style=BUTTON_STYLES.get(button.action, discord.ButtonStyle.secondary),
            )
        view.add_item(item)
    return view


# ---- where the live reply goes -------------------------------------------------------------------


def _raise_if_retryable(error: discord.HTTPException) -> None:
    """A 429 is the core's RetryLater, a 5xx a TransientFailure; anything else is the caller's."""
    if error.status == 429:
        raise _retry_later(error) from error
    if error.status >= 500:
        raise TransientFailure(f"{error.status} {error.text}") from error


def _retry_later(error: discord.HTTPException | discord.RateLimited) -> RetryLater:
    after_s = getattr(error, "retry_after", None) or 1.0
    return RetryLater(float(after_s))


class MessageReplyTarget:
    """A reply to a channel message, edited in place. Errors are normal replies: messages
    cannot be ephemeral."""

    def __init__(self, message: discord.Message, request_id: str) -> None:
        self._message = message
        self._request_id = request_id
        self._reply: discord.Message | None = None
        self._last: Rendered | None = None
        self._dead = False
        self.final_shown = False

    async def send(self, rendered: Rendered) -> None:
        embed, view = rendered2embed(rendered), rendered2view(rendered)

        async def post() -> None:
            # Not `message.reply`: if the user deleted their message meanwhile, Discord refuses
            # a reply to it ("Unknown message"); this way the answer is posted anyway.
            self._reply = await self._message.channel.send(
                embed=embed,
                view=view,  # type: ignore[arg-type]
                reference=self._message.to_reference(fail_if_not_exists=False),
                mention_author=False,
                allowed_mentions=discord.AllowedMentions.none(),
            )

        await self._deliver(post, rendered)

    async def edit(
        self, rendered: Rendered, *, overtaken: Callable[[], bool] = never_overtaken
    ) -> None:
        # discord.py paces its own calls per route; a waiting edit is not ours to drop.
        reply = self._reply
        if reply is None:
            if not self._dead:
                await self.send(rendered)
            return
        if rendered == self._last:
            return  # Discord does not refuse identical edits, but they cost rate budget.
        embed, view = rendered2embed(rendered), rendered2view(rendered)

        async def replace() -> None:
            await reply.edit(embed=embed, view=view)

        await self._deliver(replace, rendered)

    async def retract(self) -> None:
        """Delete the reply, if one was posted (a scan that ended with nothing to say)."""
        reply, self._reply = self._reply, None
        self._dead = True
        if reply is None:
            return
        try:
            await reply.delete()
        except discord.HTTPException as error:
            logger.warning(
                "request %s: cannot delete the reply on Discord (%s %s)",
                self._request_id,
                error.status,
                error.text,
            )

    async def _deliver(self, call: Callable[[], Awaitable[None]], rendered: Rendered) -> None:
        """Run one send or edit: a 429 or a 5xx is retried by the core (`_raise_if_retryable`),
        any other refusal ends the reply (see `_give_up`)."""
        try:
            await call()
        except discord.RateLimited as error:
            raise _retry_later(error) from error
        except discord.HTTPException as error:
            _raise_if_retryable(error)
            self._give_up(error)
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise TransientFailure(repr(error)) from error
        self._last = rendered
        self.final_shown = rendered.kind != "progress"

    def _give_up(self, error: discord.HTTPException) -> None:
        """No permission to post, message deleted…: nobody to tell, so log and stop."""
        self._dead = True
        self._reply = None
        logger.warning(
            "request %s: cannot reply on Discord (%s %s)",
            self._request_id,
            error.status,
            error.text,
        )


class InteractionTarget:
    """The original response of a deferred interaction. Errors and rate limits are for the
    requester only: they replace the public "thinking…" response by an ephemeral follow-up,
    because Discord cannot make an existing response ephemeral."""

    def __init__(self, interaction: discord.Interaction, request_id: str) -> None:
        self._interaction = interaction
        self._request_id = request_id
        self._last: Rendered | None = None
        self._moved_to_ephemeral = False
        self.final_shown = False

    async def send(self, rendered: Rendered) -> None:
        await self.edit(rendered)

    async def edit(
        self, rendered: Rendered, *, overtaken: Callable[[], bool] = never_overtaken
    ) -> None:
        # discord.py paces its own calls per route; a waiting edit is not ours to drop.
        embed = rendered2embed(rendered)
        try:
            if (rendered.ephemeral or rendered.kind == "error") and not self._moved_to_ephemeral:
                await self._ephemeral(embed)
            elif not self._moved_to_ephemeral:
                if rendered == self._last:
                    return
                await self._interaction.edit_original_response(
                    embed=embed, view=rendered2view(rendered)
                )
            else:
                await self._interaction.followup.send(embed=embed, ephemeral=True)
        except discord.RateLimited as error:
            raise _retry_later(error) from error
        except discord.HTTPException as error:
            _raise_if_retryable(error)
            logger.warning(
                "request %s: cannot answer the interaction (%s %s)",
                self._request_id,
                error.status,
                error.text,
            )
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise TransientFailure(repr(error)) from error
        self._last = rendered
        self.final_shown = rendered.kind != "progress"

    async def _ephemeral(self, embed: discord.Embed) -> None:
        self._moved_to_ephemeral = True
        with contextlib.suppress(discord.NotFound):
            await self._interaction.delete_original_response()
        await self._interaction.followup.send(embed=embed, ephemeral=True)
