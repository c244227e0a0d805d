"""A fake Telegram Bot API server for tests: aiohttp on 127.0.0.1, port chosen by the OS.

It speaks the HTTP protocol python-telegram-bot 22 speaks to api.telegram.org: `POST
/bot<token>/<method>` with form fields (JSON-encoded values for objects), answers
`{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description", "parameters"}`,
long-polls `getUpdates` with offset confirmation, and serves downloads at
`/file/bot<token>/<file_path>`. It keeps the state a real chat would have (messages the bot
sent, their edits) so tests can assert on what a user would see, and records every call.

Tests drive it from the user's side: `push_*` helpers inject updates (a private clip, a group
mention, a reply to a clip, a command), `delete_message` deletes a message as a user can,
`download_gate` holds file downloads until a test opens it, `revoke_token` makes every call
answer 401 as after a token reset in @BotFather, and `script_error` makes the Nth call of a
method fail the way Telegram fails (429 flood control, "message is not modified", "file is too
big", 409 conflict). Texts over 4096 characters (UTF-16 code units, after HTML parsing) are
refused as Telegram refuses them. Group messages are delivered the way privacy mode delivers
them: only commands, mentions of the bot and replies to the bot reach it.

Must never talk to the real Telegram, and binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token"
BOT_ID = 123456
BOT_USERNAME = "citywok_test_bot"
DOWNLOAD_LIMIT_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 4096

# Form fields python-telegram-bot sends JSON-encoded (objects, arrays, booleans, numbers).
_JSON_FIELDS = frozenset(
    {
        "reply_parameters",
        "reply_markup",
        "entities",
        "link_preview_options",
        "commands",
        "allowed_updates",
        "scope",
        "disable_notification",
        "protect_content",
        "drop_pending_updates",
        "allow_sending_without_reply",
        "reply_to_message_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "disable_web_page_preview",
    }
)
_INT_FIELDS = frozenset({"chat_id", "user_id"})
# Tags Telegram accepts in parse_mode=HTML.
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
        "br",
    }
)

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
FILE_TOO_BIG = "Bad Request: file is too big"
TOO_LONG = "Bad Request: message is too long"
CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)


@dataclass
class Call:
    """One Bot API request the client made: method, decoded params, when, what it got back."""

    method: str
    params: dict[str, Any]
    time: float
    status: int = 200
    response: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str


@dataclass
class BotMessage:
    """A message the bot sent, as the chat shows it now (`text`) and every version it had."""

    chat_id: int
    message_id: int
    text: str
    reply_to_message_id: int | None
    versions: list[str] = field(default_factory=list)

    @property
    def edits(self) -> int:
        return len(self.versions) - 1


@dataclass
class _ScriptedError:
    method: str
    status: int
    description: str
    parameters: dict[str, Any] | None
    nth: int | None  # the call count that fails, or any
    when: Callable[[dict[str, Any]], bool] | None  # params that fail, or any
    apply_first: bool = False  # perform the call, then answer with the error anyway

    def matches(self, method: str, count: int, params: dict[str, Any]) -> bool:
        return (
            method == self.method
            and (self.nth is None or self.nth == count)
            and (self.when is None or self.when(params))
        )


class ApiError(Exception):
    """Becomes a Bot API error response."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


class _HtmlChecker(HTMLParser):
    """Validates Telegram HTML like the real server does and keeps the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            raise ApiError(400, f"Bad Request: can't parse entities: unsupported start tag {tag!r}")
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            raise ApiError(400, f"Bad Request: can't parse entities: unexpected end tag {tag!r}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def visible_text(text: str, parse_mode: str | None) -> str:
    """What a user sees: HTML checked and stripped, as Telegram does for parse_mode=HTML."""
    if (parse_mode or "").upper() != "HTML":
        return text
    # Telegram rejects a bare "<" or an unknown "&entity;" that HTMLParser would let through.
    for match in re.finditer(r"&[^;\s]*;?", text):
        entity = match.group()
        if not entity.endswith(";") or html.unescape(entity) == entity:
            raise ApiError(400, f"Bad Request: can't parse entities: bad entity {entity!r}")
    if re.search(r"<(?![a-zA-Z/])", text):
        raise ApiError(400, "Bad Request: can't parse entities: unexpected '<'")
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.open:
        raise ApiError(400, f"Bad Request: can't parse entities: unclosed tag {checker.open[-1]}")
    return "".join(checker.text)


# ---------------------------------------------------------------------------------------------
# Media kinds: how each appears in a Message, with the fields Telegram sets.

_MEDIA_DEFAULTS: dict[str, dict[str, Any]] = {
    "video": {
        "width": 32,
        "height": 32,
        "duration": 10,
        "mime_type": "video/mp4",
        "file_name": "clip.mp4",
    },
    "document": {"mime_type": "video/mp4", "file_name": "clip.mp4"},
    "voice": {"duration": 10, "mime_type": "audio/ogg"},
    "video_note": {"length": 240, "duration": 10},
    "animation": {
        "width": 32,
        "height": 32,
        "duration": 10,
        "mime_type": "video/mp4",
        "file_name": "clip.mp4",
    },
    "audio": {"duration": 10, "mime_type": "audio/mpeg", "file_name": "clip.mp3"},
}


class FakeTelegramServer:
    """The fake Bot API. `await start()` / `await close()`; see the module docstring."""

    def __init__(self, *, token: str = TOKEN, max_poll_s: float = 0.5) -> None:
        self.token = token
        # Long polls are cut short so the client's stop and the server's teardown stay quick.
        self.max_poll_s = max_poll_s
        self.download_limit_bytes = DOWNLOAD_LIMIT_BYTES
        # Telegram's default for bots: in groups only commands, mentions and replies to the bot
        # arrive. Turned off, every group message does (as for a bot that is a group admin).
        self.privacy_mode = True
        self.bot_user = {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "CityWok",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[Call] = []
        self.commands: list[dict[str, Any]] = []
        self.description = ""
        self.short_description = ""
        self.files: dict[str, StoredFile] = {}
        self.bot_messages: dict[tuple[int, int], BotMessage] = {}
        self.chat_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self._confirmed_offset = 0
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, Iterator[int]] = {}
        self._file_ids = itertools.count(1)
        self._user_ids = itertools.count(1001)
        self._errors: list[_ScriptedError] = []
        self._counts: dict[str, int] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        # When set to an unset Event, downloads are recorded, then wait for it.
        self.download_gate: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_base(self) -> str:
        """For `ApplicationBuilder().base_url(...)`: the token is appended by the client."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- test-facing API: scripting and inspection ---------------------------------------------

    def script_error(
        self,
        method: str,
        *,
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
        nth: int | None = None,
        when: Callable[[dict[str, Any]], bool] | None = None,
        apply_first: bool = False,
    ) -> None:
        """Make one call of `method` fail: the `nth` (1-based, counted from now on) and/or the
        first whose params satisfy `when`. Each scripted error fires once."""
        if nth is not None:
            nth += self._counts.get(method, 0)
        self._errors.append(
            _ScriptedError(method, status, description, parameters, nth, when, apply_first)
        )

    def script_retry_after(
        self,
        method: str,
        *,
        retry_after_s: int = 1,
        nth: int | None = None,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Flood control: 429 with `parameters.retry_after`, as Telegram sends it."""
        self.script_error(
            method,
            nth=nth,
            when=when,
            status=429,
            description=f"Too Many Requests: retry after {retry_after_s}",
            parameters={"retry_after": retry_after_s},
        )

    def script_not_modified(
        self, *, nth: int | None = None, when: Callable[[dict[str, Any]], bool] | None = None
    ) -> None:
        """An edit answered "message is not modified". The text is applied first: Telegram
        says this only when the message already shows that text (say, an earlier edit whose
        response was lost), so the chat must show it too."""
        self.script_error(
            "editMessageText",
            nth=nth,
            when=when,
            status=400,
            description=NOT_MODIFIED,
            apply_first=True,
        )

    def script_conflict(self, *, nth: int | None = None) -> None:
        """409 on getUpdates, as when another process polls with the same token."""
        self.script_error("getUpdates", nth=nth, status=409, description=CONFLICT)

    def revoke_token(self) -> None:
        """The token is reset in @BotFather: from now on every call answers 401."""
        self.token = f"{self.token}-revoked"

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A user deletes a message (in a private chat they can delete the bot's too)."""
        self.chat_messages.pop((chat_id, message_id), None)
        self.bot_messages.pop((chat_id, message_id), None)
        self._notify()

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def replies_to(self, chat_id: int, message_id: int) -> list[BotMessage]:
        """The bot's messages that quote the given user message."""
        return [
            m
            for m in self.bot_messages.values()
            if m.chat_id == chat_id and m.reply_to_message_id == message_id
        ]

    def reply_to(self, message: dict[str, Any]) -> BotMessage | None:
        replies = self.replies_to(message["chat"]["id"], message["message_id"])
        return replies[0] if replies else None

    async def wait_for(self, predicate: Callable[[Call], bool], *, timeout_s: float = 30.0) -> Call:
        """The first recorded call (past or future) matching `predicate`."""

        def found() -> Call | None:
            return next((c for c in self.calls if predicate(c)), None)

        return await self.wait_until(found, timeout_s=timeout_s)

    async def wait_until(self, condition: Callable[[], Any], *, timeout_s: float = 30.0) -> Any:
        """Wait until `condition()` is truthy (re-checked after every change); return its value."""
        try:
            async with asyncio.timeout(timeout_s):
                while not (result := condition()):
                    await self._changed()
        except TimeoutError:
            raise TimeoutError(f"not met within {timeout_s} s; {self.summary()}") from None
        return result

    def summary(self) -> str:
        """The bot's messages and its last calls, for a failed wait's message."""
        messages = [f"{m.chat_id}/{m.message_id}: {m.versions}" for m in self.bot_messages.values()]
        calls = [f"{c.method}:{c.status}" for c in self.calls[-20:] if c.method != "getUpdates"]
        return f"bot messages {messages}; recent calls {calls}"

    async def _changed(self) -> None:
        """Returns after the next recorded call or queued update."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)

    # -- test-facing API: users, chats, files, updates -----------------------------------------

    def user(self, first_name: str = "Alice", *, user_id: int | None = None) -> dict[str, Any]:
        uid = user_id if user_id is not None else next(self._user_ids)
        return {
            "id": uid,
            "is_bot": False,
            "first_name": first_name,
            "username": first_name.lower(),
        }

    @staticmethod
    def private_chat(user: dict[str, Any]) -> dict[str, Any]:
        return {"id": user["id"], "type": "private", "first_name": user["first_name"]}

    @staticmethod
    def group_chat(chat_id: int = -1001234567890, title: str = "Fans") -> dict[str, Any]:
        return {"id": chat_id, "type": "supergroup", "title": title}

    def add_file(self, data: bytes, *, suffix: str = ".mp4") -> StoredFile:
        n = next(self._file_ids)
        stored = StoredFile(
            file_id=f"FILE{n:04d}",
            file_unique_id=f"U{n:04d}",
            data=data,
            file_path=f"documents/file_{n}{suffix}",
        )
        self.files[stored.file_id] = stored
        return stored

    def media(
        self,
        kind: str,
        data: bytes,
        *,
        file_size: int | bool | None = True,
        **fields: Any,
    ) -> dict[str, Any]:
        """A media object for a Message field `kind` (video, voice, document, ...).

        `file_size=True` reports the real size, an int overrides it, None omits it (Telegram
        may leave it out).
        """
        attrs = {**_MEDIA_DEFAULTS[kind], **fields}
        suffix = "." + attrs.get("file_name", "clip.ogg").rsplit(".", 1)[-1]
        stored = self.add_file(data, suffix=suffix)
        obj = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, **attrs}
        if file_size is True:
            obj["file_size"] = len(data)
        elif file_size not in (None, False):
            obj["file_size"] = file_size
        return obj

    def message(
        self,
        chat: dict[str, Any],
        user: dict[str, Any],
        *,
        text: str | None = None,
        caption: str | None = None,
        reply_to: dict[str, Any] | None = None,
        forwarded_from: dict[str, Any] | None = None,
        media: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A Message as Telegram would deliver it, with entities for mentions, commands, URLs.

        `media`: message fields holding files, e.g. `{"video": self.media("video", data)}`.
        """
        ids = self._message_ids.setdefault(chat["id"], itertools.count(1))
        msg: dict[str, Any] = {
            "message_id": next(ids),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            **(media or {}),
        }
        if text is not None:
            msg["text"] = text
            if entities := _entities(text):
                msg["entities"] = entities
        if caption is not None:
            msg["caption"] = caption
            if entities := _entities(caption):
                msg["caption_entities"] = entities
        if reply_to is not None:
            msg["reply_to_message"] = reply_to
        if forwarded_from is not None:
            msg["forward_origin"] = {
                "type": "user",
                "date": int(time.time()) - 60,
                "sender_user": forwarded_from,
            }
        self.chat_messages[(chat["id"], msg["message_id"])] = msg
        return msg

    def deliver(self, message: dict[str, Any]) -> bool:
        """Queue `message` for the bot if Telegram would deliver it; privacy mode in groups."""
        in_group = message["chat"]["type"] != "private"
        if in_group and self.privacy_mode and not self._addressed_to_bot(message):
            return False
        self._updates.append({"update_id": next(self._update_ids), "message": message})
        self._notify()
        return True

    def push_private_text(self, text: str, *, user: dict[str, Any]) -> dict[str, Any]:
        msg = self.message(self.private_chat(user), user, text=text)
        self.deliver(msg)
        return msg

    def push_private_media(
        self,
        kind: str,
        data: bytes,
        *,
        user: dict[str, Any],
        caption: str | None = None,
        forwarded_from: dict[str, Any] | None = None,
        file_size: int | bool | None = True,
        **fields: Any,
    ) -> dict[str, Any]:
        """A clip sent (or forwarded) straight to the bot."""
        obj = self.media(kind, data, file_size=file_size, **fields)
        msg = self.message(
            self.private_chat(user),
            user,
            caption=caption,
            forwarded_from=forwarded_from,
            media={kind: obj},
        )
        self.deliver(msg)
        return msg

    def post_group_media(
        self,
        kind: str,
        data: bytes,
        *,
        user: dict[str, Any],
        chat: dict[str, Any] | None = None,
        caption: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A clip posted in a group; delivered only if its caption addresses the bot."""
        obj = self.media(kind, data, **fields)
        msg = self.message(chat or self.group_chat(), user, caption=caption, media={kind: obj})
        self.deliver(msg)
        return msg

    def push_group_text(
        self,
        text: str,
        *,
        user: dict[str, Any],
        chat: dict[str, Any] | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A group text message (a mention, a command, a reply); privacy mode applies."""
        msg = self.message(chat or self.group_chat(), user, text=text, reply_to=reply_to)
        self.deliver(msg)
        return msg

    def push_group_mention(
        self, *, user: dict[str, Any], text: str = "", chat: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.push_group_text(f"@{BOT_USERNAME} {text}".strip(), user=user, chat=chat)

    def push_reply_mention(
        self, clip: dict[str, Any], *, user: dict[str, Any], text: str = "which episode?"
    ) -> dict[str, Any]:
        """Someone replies to a clip in a group, mentioning the bot."""
        return self.push_group_text(
            f"@{BOT_USERNAME} {text}", user=user, chat=clip["chat"], reply_to=clip
        )

    def push_reply_to_bot(
        self,
        bot_message: BotMessage,
        *,
        user: dict[str, Any],
        text: str,
        chat: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        original = self.chat_messages[(bot_message.chat_id, bot_message.message_id)]
        return self.push_group_text(
            text, user=user, chat=chat or original["chat"], reply_to=original
        )

    def push_command(
        self,
        command: str,
        args: str = "",
        *,
        user: dict[str, Any],
        chat: dict[str, Any] | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`/command args` in a chat (a group by default), optionally as a reply."""
        text = f"/{command} {args}".strip()
        target = chat or self.group_chat()
        if target["type"] == "private":
            msg = self.message(target, user, text=text, reply_to=reply_to)
            self.deliver(msg)
            return msg
        return self.push_group_text(text, user=user, chat=target, reply_to=reply_to)

    def push_whichepisode(self, *, user: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.push_command("whichepisode", kwargs.pop("args", ""), user=user, **kwargs)

    # -- the Bot API ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await _params(request)
        call = Call(method=method, params=params, time=time.monotonic())
        self._counts[method] = self._counts.get(method, 0) + 1
        try:
            scripted = self._scripted(method, params)
            if scripted is not None and not scripted.apply_first:
                raise ApiError(scripted.status, scripted.description, scripted.parameters)
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            result = await handler(params)
            if scripted is not None:
                raise ApiError(scripted.status, scripted.description, scripted.parameters)
        except ApiError as exc:
            call.status, call.response = exc.status, exc.description
            self._record(call)
            return _error(exc.status, exc.description, exc.parameters)
        call.response = result
        self._record(call)
        return web.json_response({"ok": True, "result": result})

    def _scripted(self, method: str, params: dict[str, Any]) -> _ScriptedError | None:
        count = self._counts[method]
        for err in self._errors:
            if err.matches(method, count, params):
                self._errors.remove(err)
                return err
        return None

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self.bot_user

    async def _m_logOut(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_close(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        if params.get("drop_pending_updates"):
            self._confirmed_offset = max((u["update_id"] for u in self._updates), default=0) + 1
            self._updates.clear()
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        self.commands = list(params.get("commands") or [])
        return True

    async def _m_getMyCommands(self, params: dict[str, Any]) -> Any:
        return self.commands

    async def _m_setMyDescription(self, params: dict[str, Any]) -> Any:
        # Telegram: up to 512 characters, shown in an empty chat with the bot.
        text = str(params.get("description") or "")
        if len(text) > 512:
            raise ApiError(400, "Bad Request: bot description is too long")
        self.description = text
        return True

    async def _m_setMyShortDescription(self, params: dict[str, Any]) -> Any:
        # Telegram: up to 120 characters, shown on the bot's profile and in shared links.
        text = str(params.get("short_description") or "")
        if len(text) > 120:
            raise ApiError(400, "Bad Request: bot short description is too long")
        self.short_description = text
        return True

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        if offset:
            # Telegram forgets every update below the offset: they are confirmed.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        limit = int(params.get("limit") or 100)
        wait_s = min(float(params.get("timeout") or 0), self.max_poll_s)
        if not self._updates and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await self.wait_until(lambda: self._updates, timeout_s=wait_s)
        return self._updates[:limit]

    async def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        self._chat_id(params)
        return True

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat_id(params)
        text = self._text(params)
        reply_to = _reply_to_id(params)
        if reply_to is not None and (chat_id, reply_to) not in self.chat_messages:
            raise ApiError(400, "Bad Request: message to be replied not found")
        chat = self._chat_of(chat_id)
        msg = self.message(chat, self.bot_user, text=text)
        if reply_to is not None:
            msg["reply_to_message"] = self.chat_messages[(chat_id, reply_to)]
        self.bot_messages[(chat_id, msg["message_id"])] = BotMessage(
            chat_id=chat_id,
            message_id=msg["message_id"],
            text=text,
            reply_to_message_id=reply_to,
            versions=[text],
        )
        return msg

    async def _m_deleteMessage(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat_id(params)
        message_id = int(params.get("message_id") or 0)
        if (chat_id, message_id) not in self.chat_messages:
            raise ApiError(400, "Bad Request: message to delete not found")
        self.delete_message(chat_id, message_id)
        return True

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat_id(params)
        message_id = int(params.get("message_id") or 0)
        stored = self.bot_messages.get((chat_id, message_id))
        if stored is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        text = self._text(params)
        if text == stored.text:
            raise ApiError(400, NOT_MODIFIED)
        stored.text = text
        stored.versions.append(text)
        msg = dict(self.chat_messages[(chat_id, message_id)])
        msg["text"] = text
        msg["edit_date"] = int(time.time())
        self.chat_messages[(chat_id, message_id)] = msg
        return msg

    async def _m_getFile(self, params: dict[str, Any]) -> Any:
        stored = self.files.get(str(params.get("file_id")))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > self.download_limit_bytes:
            raise ApiError(400, FILE_TOO_BIG)
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        stored = next((f for f in self.files.values() if f.file_path == path), None)
        self._record(Call(method="download", params={"path": path}, time=time.monotonic()))
        if self.download_gate is not None:
            await self.download_gate.wait()
        if stored is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # -- helpers ----------------------------------------------------------------------------------

    def _chat_id(self, params: dict[str, Any]) -> int:
        try:
            return int(params["chat_id"])
        except (KeyError, ValueError, TypeError):
            raise ApiError(400, "Bad Request: chat not found") from None

    def _chat_of(self, chat_id: int) -> dict[str, Any]:
        for (cid, _), msg in self.chat_messages.items():
            if cid == chat_id:
                return msg["chat"]
        raise ApiError(400, "Bad Request: chat not found")

    def _text(self, params: dict[str, Any]) -> str:
        raw = params.get("text")
        if not raw:
            raise ApiError(400, "Bad Request: message text is empty")
        text = visible_text(str(raw), params.get("parse_mode"))
        if _utf16_len(text) > MAX_TEXT_CHARS:
            raise ApiError(400, TOO_LONG)
        return text

    def _addressed_to_bot(self, message: dict[str, Any]) -> bool:
        text = message.get("text") or message.get("caption") or ""
        if text.startswith("/"):
            command = text.split()[0]
            return "@" not in command or command.endswith(f"@{BOT_USERNAME}")
        if f"@{BOT_USERNAME}".lower() in text.lower():
            return True
        reply = message.get("reply_to_message")
        return bool(reply and reply.get("from", {}).get("id") == BOT_ID)


def _entities(text: str) -> list[dict[str, Any]]:
    """Entities Telegram would attach: mentions, bot commands, URLs (offsets in UTF-16 units)."""
    patterns = (
        ("bot_command", r"(?<!\S)/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?"),
        ("mention", r"(?<![\w@])@[A-Za-z0-9_]{5,32}"),
        ("url", r"https?://\S+"),
    )
    found = []
    for kind, pattern in patterns:
        for m in re.finditer(pattern, text):
            found.append(
                {
                    "type": kind,
                    "offset": _utf16_len(text[: m.start()]),
                    "length": _utf16_len(m.group()),
                }
            )
    return sorted(found, key=lambda e: e["offset"])


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _reply_to_id(params: dict[str, Any]) -> int | None:
    reply = params.get("reply_parameters")
    if isinstance(reply, dict) and reply.get("message_id") is not None:
        return int(reply["message_id"])
    if params.get("reply_to_message_id") is not None:
        return int(params["reply_to_message_id"])
    return None


async def _params(request: web.Request) -> dict[str, Any]:
    """Decode a Bot API request: query string, form (urlencoded or multipart) or JSON body."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        params.update(await request.json())
        return params
    if request.method == "POST":
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = value.file.read()
            else:
                params[key] = value if isinstance(value, str) else bytes(value)
    for key in list(params):
        value = params[key]
        if key in _JSON_FIELDS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
        elif key in _INT_FIELDS and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            params[key] = int(value)
    return params


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)
