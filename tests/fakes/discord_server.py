"""A fake Discord (REST v10 + gateway) that the real discord.py 2.7 client talks to in tests.

Why a fake server and not dpytest or mocks: dpytest does not do interactions, and mocking
discord.py would test our guesses about it instead of the library. This speaks just enough of the
wire protocol for the bot: login, gateway hello / identify / ready / guild create / heartbeats /
resume / invalid session, message create, application command and context-menu interactions,
message replies and edits, interaction callbacks, webhook edits and follow-ups, and attachment
downloads from a fake CDN path. It keeps a record of every REST call and of everything posted so
tests can assert on what a user would see. Tests can also delete a user's message
(`delete_message`), make the CDN fail for an upload (`fail_cdn`), and close the gateway with any
close code (`disconnect_gateway(4004)`: the token was reset).

Rules it enforces because discord.py depends on them: JSON bodies are sent with a Content-Type of
exactly `application/json`; a 429 carries a `Via` header (without one discord.py assumes a
Cloudflare ban) and `retry_after` in the body; an interaction must be acknowledged within 3 s and
only once; without the message-content intent, guild message content and attachments arrive empty
unless the bot is mentioned or it is the bot's own message.

Must never bind anything but 127.0.0.1, and is started and torn down by the `discord_server`
fixture (tests/bot/test_discord.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

API_PREFIX = "/api/v10"
INTENT_MESSAGE_CONTENT = 1 << 15
EPHEMERAL = 1 << 6
LOADING = 1 << 7
CLOSE_DISALLOWED_INTENTS = 4014
Json = dict[str, Any]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response whose Content-Type is exactly `application/json` (no charset), because
    discord.py compares the header verbatim before decoding."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(payload).encode(), status=status, headers=all_headers)


def error_response(status: int, code: int, message: str) -> web.Response:
    return json_response({"code": code, "message": message}, status=status)


@dataclass
class RestCall:
    """One REST request as the server saw it (after any scripted failure)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    at: float = field(default_factory=time.monotonic)


@dataclass
class Upload:
    """A file on the fake CDN, with the attachment payload Discord would send for it."""

    payload: Json

    @property
    def id(self) -> str:
        return str(self.payload["id"])


@dataclass
class MessageRecord:
    """A message in a channel; `history` holds every version (creation first, then edits)."""

    payload: Json
    history: list[Json] = field(default_factory=list)
    deleted: bool = False
    at: float = field(default_factory=time.monotonic)  # when it was posted
    # The bot's own reactions on it now, and every add/remove as (op, emoji, monotonic time).
    bot_reactions: list[str] = field(default_factory=list)
    reaction_log: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.payload["id"])

    @property
    def edits(self) -> int:
        return len(self.history) - 1


@dataclass
class InteractionRecord:
    """An interaction we dispatched and what the bot answered to it."""

    id: int
    token: str
    payload: Json
    dispatched_at: float
    callback_type: int | None = None
    ephemeral: bool = False
    original: MessageRecord | None = None
    followups: list[MessageRecord] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.callback_type is not None

    def all_messages(self) -> list[MessageRecord]:
        return ([self.original] if self.original else []) + self.followups


@dataclass
class _Script429:
    method: str
    pattern: re.Pattern[str]
    nth: int
    retry_after_s: float
    is_global: bool
    seen: int = 0
    fired: bool = False


@dataclass
class _ScriptFailure:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    body_contains: str | None


class FakeDiscord:
    """The fake. Start with `await start()`, stop with `await close()` (the fixture does both)."""

    def __init__(
        self,
        *,
        token: str = "fake-discord-token",
        grant_message_content: bool = True,
        heartbeat_interval_ms: int = 41250,
        interaction_deadline_s: float = 3.0,
    ) -> None:
        self.token = token
        self.grant_message_content = grant_message_content
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.interaction_deadline_s = interaction_deadline_s
        self._ids = itertools.count(1_300_000_000_000_000_000)
        self.application_id = self.new_id()
        self.bot_user = self._user(self.application_id, "CityWok", bot=True)
        self.guild_id = self.new_id()
        self.channel_id = self.new_id()
        self.owner = self._user(self.new_id(), "owner")
        self.member = self._user(self.new_id(), "viewer")
        self.calls: list[RestCall] = []
        self.gateway_log: list[Json] = []  # every payload the client sent
        self.server_closes: list[int] = []  # close codes the fake sent
        self.messages: dict[int, MessageRecord] = {}
        self.interactions: dict[str, InteractionRecord] = {}
        self.commands: dict[int | None, list[Json]] = {}  # guild id (None = global) → commands
        self.uploads: dict[str, bytes] = {}
        self.cdn_failures: dict[str, int] = {}  # upload key → HTTP status the CDN answers
        self.dm_channels: dict[int, int] = {}  # user id → DM channel id
        self.identify_count = 0
        self.resume_count = 0
        self.invalidate_next_resume = False
        self.deny_reactions = False  # True: the bot lacks Add Reactions (403 on every reaction)
        self._scripts: list[_Script429] = []
        self._failures: list[_ScriptFailure] = []
        self._session_id: str | None = None
        self._guild_sent = False
        self._intents = 0
        self._seq = 0
        self._events: list[Json] = []  # dispatched in this session, for replay on resume
        self._ws: web.WebSocketResponse | None = None
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/attachments/{channel}/{id}/{filename}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        """What `discord.http.Route.BASE` must be set to."""
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """What `DiscordWebSocket.DEFAULT_GATEWAY` must be set to."""
        return f"ws://127.0.0.1:{self._port}/gateway"

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed and self._session_id is not None

    # ---- test-facing helpers -------------------------------------------------------------

    def new_id(self) -> int:
        return next(self._ids)

    async def wait_for(
        self, predicate: Callable[[], Any], *, timeout_s: float = 30.0, what: str = ""
    ) -> Any:
        """Wait until `predicate()` is truthy (re-checked whenever the fake's state changes) and
        return its value. The timeout only guards against a hung test."""

        async def _wait() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    await self._changed.wait()
                return value

        try:
            return await asyncio.wait_for(_wait(), timeout_s)
        except TimeoutError:
            raise AssertionError(
                f"fake Discord: gave up waiting for {what or predicate!r}; REST calls: "
                f"{[(c.method, c.path, c.status) for c in self.calls]}"
            ) from None

    async def wait_connected(self) -> None:
        await self.wait_for(lambda: self.connected and self._guild_sent, what="bot connected")

    def upload(self, filename: str, data: bytes, content_type: str | None) -> Upload:
        """Put a file on the fake CDN; returns its attachment payload for messages and
        interactions."""
        attachment_id = self.new_id()
        self.uploads[f"{attachment_id}/{filename}"] = data
        url = f"http://127.0.0.1:{self._port}/cdn/attachments/{self.channel_id}/{attachment_id}/{filename}"
        payload: Json = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }
        if content_type:
            payload["content_type"] = content_type
        return Upload(payload)

    async def post_message(
        self,
        content: str,
        *,
        attachments: tuple[Upload, ...] = (),
        author: Json | None = None,
        mention_bot: bool = False,
        reply_to: MessageRecord | None = None,
        dm: bool = False,
    ) -> MessageRecord:
        """A user posts in the test channel (or in a DM with the bot): stores the message and
        dispatches MESSAGE_CREATE (content hidden as Discord would without the intent)."""
        author = author or self.member
        channel_id = self._dm_channel(int(author["id"])) if dm else self.channel_id
        mentions = [self.bot_user] if mention_bot else []
        if mention_bot:
            content = f"<@{self.application_id}> {content}"
        record = self._store_message(
            channel_id=channel_id,
            author=author,
            content=content,
            attachments=[a.payload for a in attachments],
            mentions=mentions,
            reference=reply_to,
            guild=not dm,
        )
        if reply_to is not None and int(reply_to.payload["author"]["id"]) == self.application_id:
            # A reply pings the replied-to author by default; Discord lists them in mentions.
            record.payload["mentions"].append(self.bot_user)
        await self.dispatch("MESSAGE_CREATE", self._as_seen_by_bot(record.payload))
        return record

    async def delete_message(self, record: MessageRecord) -> None:
        """A user deletes their message: gone for replies (a reply to it is refused unless it
        says `fail_if_not_exists: false`), MESSAGE_DELETE dispatched."""
        record.deleted = True
        data: Json = {"id": str(record.id), "channel_id": record.payload["channel_id"]}
        if "guild_id" in record.payload:
            data["guild_id"] = record.payload["guild_id"]
        await self.dispatch("MESSAGE_DELETE", data)

    def fail_cdn(self, upload: Upload, status: int = 500) -> None:
        """The CDN answers `status` for this upload (a 5xx hiccup, 403/404 for an expired link)."""
        self.cdn_failures[f"{upload.id}/{upload.payload['filename']}"] = status

    async def invoke_slash(
        self,
        name: str,
        options: dict[str, str | Upload] | None = None,
        *,
        subcommand: str | None = None,
        user: Json | None = None,
        permissions: int | None = None,
        dm: bool = False,
    ) -> InteractionRecord:
        """A user runs a chat-input command; string and attachment options are supported,
        attachments go into `resolved.attachments` as Discord sends them."""
        command, guild_scoped = self._find_command(name, 1, dm=dm)
        opts: list[Json] = []
        resolved: Json = {}
        for key, value in (options or {}).items():
            if isinstance(value, Upload):
                opts.append({"name": key, "type": 11, "value": value.id})
                resolved.setdefault("attachments", {})[value.id] = value.payload
            else:
                opts.append({"name": key, "type": 3, "value": value})
        if subcommand is not None:
            opts = [{"name": subcommand, "type": 1, "options": opts}]
        data: Json = {"id": command["id"], "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        if guild_scoped:
            data["guild_id"] = str(self.guild_id)
        return await self._interact(data, user=user, permissions=permissions, dm=dm)

    async def invoke_context_menu(
        self, name: str, target: MessageRecord, *, user: Json | None = None, dm: bool = False
    ) -> InteractionRecord:
        """A user picks a message context-menu command on `target` (full message in
        `resolved.messages`: Discord sends content there even without the intent)."""
        command, guild_scoped = self._find_command(name, 3, dm=dm)
        data: Json = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": str(target.id),
            "resolved": {"messages": {str(target.id): target.payload}},
        }
        if guild_scoped:
            data["guild_id"] = str(self.guild_id)
        return await self._interact(data, user=user, permissions=None, dm=dm)

    async def disconnect_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway socket as Discord does on a server-side hiccup; the session
        stays resumable (events dispatched meanwhile are replayed on RESUME)."""
        ws = self._ws
        if ws is not None and not ws.closed:
            self._ws = None
            self.server_closes.append(code)
            await ws.close(code=code, message=b"fake disconnect")
        await self._notify()

    def script_429(
        self,
        method: str,
        path_regex: str,
        *,
        nth: int,
        retry_after_s: float = 0.05,
        is_global: bool = False,
    ) -> None:
        """Answer the `nth` (1-based) request matching method and path (under /api/v10) with a
        429, as Discord does: `Via` header, X-RateLimit headers and a JSON `retry_after`."""
        self._scripts.append(
            _Script429(method.upper(), re.compile(path_regex), nth, retry_after_s, is_global)
        )

    def fail_with(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 502,
        times: int = 1,
        body_contains: str | None = None,
    ) -> None:
        """Answer the next `times` requests matching method and path (and, if given, whose
        JSON body holds `body_contains`) with a bare `status` (a 5xx from Discord's edge)."""
        self._failures.append(
            _ScriptFailure(method.upper(), re.compile(path_regex), status, times, body_contains)
        )

    def rate_limit_message_edit(self, *, nth: int, retry_after_s: float = 0.05) -> None:
        self.script_429(
            "PATCH", r"^/channels/\d+/messages/\d+$", nth=nth, retry_after_s=retry_after_s
        )

    def calls_to(self, method: str, path_regex: str) -> list[RestCall]:
        pattern = re.compile(path_regex)
        return [c for c in self.calls if c.method == method and pattern.search(c.path)]

    def bot_messages(self, channel_id: int | None = None) -> list[MessageRecord]:
        """Messages the bot posted and did not delete (in the guild channel unless told
        otherwise)."""
        channel = str(channel_id or self.channel_id)
        return [
            m
            for m in self.messages.values()
            if m.payload["author"]["id"] == str(self.application_id)
            and m.payload["channel_id"] == channel
            and not m.deleted
        ]

    def replies_to(self, message: MessageRecord) -> list[MessageRecord]:
        return [
            m
            for m in self.messages.values()
            if m.payload.get("message_reference", {}).get("message_id") == str(message.id)
            and m.payload["author"]["id"] == str(self.application_id)
            and not m.deleted
        ]

    def make_user(self, name: str) -> Json:
        return self._user(self.new_id(), name)

    # ---- gateway ---------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, autoping=True)
        await ws.prepare(request)
        if self._ws is not None and not self._ws.closed:
            await self._ws.close(code=4000)
        self._ws = ws
        await ws.send_json(
            {
                "op": 10,
                "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                "s": None,
                "t": None,
            }
        )
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            self.gateway_log.append(payload)
            await self._on_gateway_op(ws, payload)
            await self._notify()
        if self._ws is ws:
            self._ws = None
        await self._notify()
        return ws

    async def _on_gateway_op(self, ws: web.WebSocketResponse, payload: Json) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(ws, data)
        elif op == 6:
            await self._resume(ws, data)

    async def _identify(self, ws: web.WebSocketResponse, data: Json) -> None:
        if data.get("token") != self.token:
            self.server_closes.append(4004)
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(data.get("intents", 0))
        if intents & INTENT_MESSAGE_CONTENT and not self.grant_message_content:
            self.server_closes.append(CLOSE_DISALLOWED_INTENTS)
            await ws.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return
        self.identify_count += 1
        self._intents = intents
        self._session_id = f"session-{self.new_id()}"
        self._seq = 0
        self._events = []
        self._guild_sent = False
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.bot_user,
                "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                "session_id": self._session_id,
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
            },
        )
        await self.dispatch("GUILD_CREATE", self._guild_payload())
        self._guild_sent = True

    async def _resume(self, ws: web.WebSocketResponse, data: Json) -> None:
        if (
            self.invalidate_next_resume
            or data.get("token") != self.token
            or data.get("session_id") != self._session_id
        ):
            self.invalidate_next_resume = False
            await ws.send_json({"op": 9, "d": False, "s": None, "t": None})
            return
        self.resume_count += 1
        seen = int(data.get("seq") or 0)
        for event in self._events:
            if event["s"] > seen:
                await ws.send_json(event)
        await self.dispatch("RESUMED", {})

    async def dispatch(self, event: str, data: Json) -> None:
        """Send a DISPATCH to the bot, or keep it for replay if the socket is down."""
        self._seq += 1
        payload = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._events.append(payload)
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.send_json(payload)
        await self._notify()

    # ---- REST --------------------------------------------------------------------------------

    _OWN_REACTION = (
        r"^/channels/(?P<channel>\d+)/messages/(?P<message>\d+)/reactions/(?P<emoji>[^/]+)/@me$"
    )
    _ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", r"^/users/@me$", "_get_me"),
        ("GET", r"^/oauth2/applications/@me$", "_get_app"),
        ("GET", r"^/gateway(/bot)?$", "_get_gateway"),
        ("PUT", r"^/applications/(?P<app>\d+)/commands$", "_put_commands"),
        ("GET", r"^/applications/(?P<app>\d+)/commands$", "_get_commands"),
        ("PUT", r"^/applications/(?P<app>\d+)/guilds/(?P<guild>\d+)/commands$", "_put_commands"),
        ("GET", r"^/applications/(?P<app>\d+)/guilds/(?P<guild>\d+)/commands$", "_get_commands"),
        ("POST", r"^/channels/(?P<channel>\d+)/messages$", "_create_message"),
        ("PATCH", r"^/channels/(?P<channel>\d+)/messages/(?P<message>\d+)$", "_edit_message"),
        ("DELETE", r"^/channels/(?P<channel>\d+)/messages/(?P<message>\d+)$", "_delete_own"),
        ("PUT", _OWN_REACTION, "_react"),
        ("DELETE", _OWN_REACTION, "_unreact"),
        ("POST", r"^/users/@me/channels$", "_open_dm"),
        ("POST", r"^/interactions/(?P<id>\d+)/(?P<token>[^/]+)/callback$", "_callback"),
        (
            "PATCH",
            r"^/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/@original$",
            "_edit_original",
        ),
        ("GET", r"^/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/@original$", "_get_original"),
        (
            "DELETE",
            r"^/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/@original$",
            "_delete_original",
        ),
        ("POST", r"^/webhooks/(?P<app>\d+)/(?P<token>[^/]+)$", "_followup"),
    ]

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body = await self._read_body(request)
        response = self._scripted_429(request.method, path) or self._scripted_failure(
            request.method, path, body
        )
        if response is None:
            if not self._authorised(request):
                response = error_response(401, 0, "401: Unauthorized")
            else:
                response = await self._route(request.method, path, body, request)
        self.calls.append(
            RestCall(request.method, path, dict(request.query), body, response.status)
        )
        await self._notify()
        return response

    def _authorised(self, request: web.Request) -> bool:
        """Bot routes need `Authorization: Bot <token>`; interaction/webhook routes use the
        interaction token in the path instead."""
        path = request.match_info["tail"]
        if path.startswith(("interactions/", "webhooks/")):
            return True
        return request.headers.get("Authorization") == f"Bot {self.token}"

    async def _route(self, method: str, path: str, body: Any, request: web.Request) -> web.Response:
        for route_method, regex, handler in self._ROUTES:
            if method == route_method and (match := re.match(regex, path)):
                return await getattr(self, handler)(body, request, **match.groupdict())
        return error_response(404, 0, "404: Not Found")

    @staticmethod
    async def _read_body(request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            body: Any = None
            while (part := await reader.next()) is not None:
                if getattr(part, "name", None) == "payload_json":
                    body = json.loads(await part.text())  # type: ignore[union-attr]
            return body
        raw = await request.read()
        return json.loads(raw) if raw else None

    def _scripted_failure(self, method: str, path: str, body: Any) -> web.Response | None:
        for script in self._failures:
            if script.times <= 0 or script.method != method or not script.pattern.search(path):
                continue
            if script.body_contains is not None and script.body_contains not in json.dumps(body):
                continue
            script.times -= 1
            return web.Response(status=script.status, text=f"{script.status} Server Error")
        return None

    def _scripted_429(self, method: str, path: str) -> web.Response | None:
        for script in self._scripts:
            if script.fired or script.method != method or not script.pattern.search(path):
                continue
            script.seen += 1
            if script.seen == script.nth:
                script.fired = True
                return json_response(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": script.retry_after_s,
                        "global": script.is_global,
                    },
                    status=429,
                    headers={
                        "Via": "1.1 google",
                        "Retry-After": str(max(1, round(script.retry_after_s))),
                        "X-RateLimit-Limit": "5",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{time.time() + script.retry_after_s:.3f}",
                        "X-RateLimit-Reset-After": f"{script.retry_after_s:.3f}",
                        "X-RateLimit-Bucket": "fake-edit-bucket",
                        "X-RateLimit-Scope": "user",
                    }
                    | ({"X-RateLimit-Global": "true"} if script.is_global else {}),
                )
        return None

    async def _get_me(self, body: Any, request: web.Request) -> web.Response:
        return json_response(self.bot_user)

    async def _get_app(self, body: Any, request: web.Request) -> web.Response:
        return json_response(
            {
                "id": str(self.application_id),
                "name": "CityWok",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner,
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "integration_types_config": {"0": {}, "1": {}},
            }
        )

    async def _get_gateway(self, body: Any, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _put_commands(
        self, body: Any, request: web.Request, app: str, guild: str | None = None
    ) -> web.Response:
        if int(app) != self.application_id:
            return error_response(403, 50001, "Missing Access")
        stored = []
        for command in body:
            item = dict(command)
            item.setdefault("type", 1)
            item.update(id=str(self.new_id()), application_id=app, version=str(self.new_id()))
            item.setdefault("description", "")
            if item.get("default_member_permissions") is not None:
                # Discord stores and returns permission bit sets as strings.
                item["default_member_permissions"] = str(item["default_member_permissions"])
            if guild is not None:
                item["guild_id"] = guild
            stored.append(item)
        self.commands[int(guild) if guild else None] = stored
        return json_response(stored)

    async def _get_commands(
        self, body: Any, request: web.Request, app: str, guild: str | None = None
    ) -> web.Response:
        return json_response(self.commands.get(int(guild) if guild else None, []))

    async def _create_message(self, body: Json, request: web.Request, channel: str) -> web.Response:
        channel_id = int(channel)
        if channel_id != self.channel_id and channel_id not in self.dm_channels.values():
            return error_response(404, 10003, "Unknown Channel")
        reference = None
        if ref := body.get("message_reference"):
            reference = self.messages.get(int(ref["message_id"]))
            if reference is not None and reference.deleted:
                reference = None
            if reference is None and ref.get("fail_if_not_exists", True):
                # Discord: 50035 with message_reference "Unknown message"; without the check,
                # the message is posted as a plain message.
                return error_response(400, 50035, "Invalid Form Body (message_reference)")
        record = self._store_message(
            channel_id=channel_id,
            author=self.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds") or [],
            reference=reference,
            guild=channel_id == self.channel_id,
            flags=int(body.get("flags") or 0),
        )
        await self.dispatch("MESSAGE_CREATE", record.payload)
        return json_response(record.payload)

    async def _edit_message(
        self, body: Json, request: web.Request, channel: str, message: str
    ) -> web.Response:
        record = self.messages.get(int(message))
        if record is None or record.payload["channel_id"] != channel:
            return error_response(404, 10008, "Unknown Message")
        if record.payload["author"]["id"] != str(self.application_id):
            return error_response(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(record, body)
        await self.dispatch("MESSAGE_UPDATE", record.payload)
        return json_response(record.payload)

    async def _delete_own(
        self, body: Any, request: web.Request, channel: str, message: str
    ) -> web.Response:
        """The bot deletes a message of its own (Manage Messages is needed for anyone else's)."""
        record = self.messages.get(int(message))
        if record is None or record.deleted or record.payload["channel_id"] != channel:
            return error_response(404, 10008, "Unknown Message")
        if record.payload["author"]["id"] != str(self.application_id):
            return error_response(403, 50013, "Missing Permissions")
        await self.delete_message(record)
        return web.Response(status=204)

    async def _react(
        self, body: Any, request: web.Request, channel: str, message: str, emoji: str
    ) -> web.Response:
        record = self.messages.get(int(message))
        if record is None or record.deleted or record.payload["channel_id"] != channel:
            return error_response(404, 10008, "Unknown Message")
        if self.deny_reactions:
            return error_response(403, 50013, "Missing Permissions")
        emoji = urllib.parse.unquote(emoji)
        if emoji not in record.bot_reactions:
            record.bot_reactions.append(emoji)
        record.reaction_log.append(("add", emoji, time.monotonic()))
        return web.Response(status=204)

    async def _unreact(
        self, body: Any, request: web.Request, channel: str, message: str, emoji: str
    ) -> web.Response:
        record = self.messages.get(int(message))
        if record is None or record.payload["channel_id"] != channel:
            return error_response(404, 10008, "Unknown Message")
        emoji = urllib.parse.unquote(emoji)
        if emoji in record.bot_reactions:
            record.bot_reactions.remove(emoji)
        record.reaction_log.append(("remove", emoji, time.monotonic()))
        return web.Response(status=204)

    async def _open_dm(self, body: Json, request: web.Request) -> web.Response:
        user_id = int(body["recipient_id"])
        return json_response(self._dm_channel_payload(user_id))

    async def _callback(
        self, body: Json, request: web.Request, id: str, token: str
    ) -> web.Response:
        record = self.interactions.get(token)
        if record is None or record.id != int(id):
            return error_response(404, 10062, "Unknown interaction")
        if time.monotonic() - record.dispatched_at > self.interaction_deadline_s:
            return error_response(404, 10062, "Unknown interaction")
        if record.acknowledged:
            return error_response(400, 40060, "Interaction has already been acknowledged.")
        kind = int(body["type"])
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        record.callback_type = kind
        record.ephemeral = bool(flags & EPHEMERAL)
        response: Json = {
            "interaction": {
                "id": str(record.id),
                "type": record.payload["type"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": record.ephemeral,
            }
        }
        if kind in (4, 5):
            original = self._store_message(
                channel_id=int(record.payload["channel"]["id"]),
                author=self.bot_user,
                content=data.get("content") or "",
                embeds=data.get("embeds") or [],
                guild="guild_id" in record.payload,
                flags=flags | (LOADING if kind == 5 else 0),
                interaction=record,
            )
            record.original = original
            response["interaction"]["response_message_id"] = str(original.id)
            response["resource"] = {"type": kind, "message": original.payload}
        if request.query.get("with_response") in ("1", "true", "True"):
            return json_response(response)
        return web.Response(status=204)

    async def _edit_original(
        self, body: Json, request: web.Request, app: str, token: str
    ) -> web.Response:
        record = self.interactions.get(token)
        if record is None or int(app) != self.application_id:
            return error_response(404, 10015, "Unknown Webhook")
        if record.original is None:
            return error_response(404, 10008, "Unknown Message")
        self._apply_edit(record.original, body)
        return json_response(record.original.payload)

    async def _get_original(
        self, body: Any, request: web.Request, app: str, token: str
    ) -> web.Response:
        record = self.interactions.get(token)
        if record is None or record.original is None:
            return error_response(404, 10008, "Unknown Message")
        return json_response(record.original.payload)

    async def _delete_original(
        self, body: Any, request: web.Request, app: str, token: str
    ) -> web.Response:
        record = self.interactions.get(token)
        if record is None or record.original is None or record.original.deleted:
            return error_response(404, 10008, "Unknown Message")
        record.original.deleted = True
        return web.Response(status=204)

    async def _followup(
        self, body: Json, request: web.Request, app: str, token: str
    ) -> web.Response:
        record = self.interactions.get(token)
        if record is None or int(app) != self.application_id:
            return error_response(404, 10015, "Unknown Webhook")
        if not record.acknowledged:
            return error_response(404, 10015, "Unknown Webhook")
        message = self._store_message(
            channel_id=int(record.payload["channel"]["id"]),
            author=self.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds") or [],
            guild="guild_id" in record.payload,
            flags=int(body.get("flags") or 0),
            interaction=record,
        )
        record.followups.append(message)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message.payload)
        return web.Response(status=204)

    async def _cdn(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['id']}/{request.match_info['filename']}"
        status = self.cdn_failures.get(key, 200 if key in self.uploads else 404)
        self.calls.append(RestCall("GET", "/cdn/attachments/" + key, {}, None, status))
        await self._notify()
        if status != 200:
            return web.Response(status=status, text="CDN error")
        return web.Response(body=self.uploads[key], content_type="application/octet-stream")

    # ---- payload builders ------------------------------------------------------------------------

    @staticmethod
    def _user(user_id: int, name: str, *, bot: bool = False) -> Json:
        return {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": name,
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
        }

    def _member(self, user: Json, *, permissions: int | None = None) -> Json:
        member: Json = {
            "user": user,
            "roles": [],
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "nick": None,
            "flags": 0,
        }
        if permissions is not None:
            member["permissions"] = str(permissions)
        return member

    def _guild_payload(self) -> Json:
        everyone = {
            "id": str(self.guild_id),
            "name": "@everyone",
            "permissions": str(0x3F7FFF),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        return {
            "id": str(self.guild_id),
            "name": "Fake Guild",
            "icon": None,
            "owner_id": self.owner["id"],
            "roles": [everyone],
            "emojis": [],
            "stickers": [],
            "features": [],
            "unavailable": False,
            "large": False,
            "member_count": 3,
            "joined_at": _now_iso(),
            "verification_level": 0,
            "mfa_level": 0,
            "channels": [self._channel_payload()],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "preferred_locale": "en-US",
            "members": [self._member(u) for u in (self.bot_user, self.owner, self.member)],
        }

    def _channel_payload(self) -> Json:
        return {
            "id": str(self.channel_id),
            "type": 0,
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "guild_id": str(self.guild_id),
            "rate_limit_per_user": 0,
        }

    def _dm_channel(self, user_id: int) -> int:
        if user_id not in self.dm_channels:
            self.dm_channels[user_id] = self.new_id()
        return self.dm_channels[user_id]

    def _dm_channel_payload(self, user_id: int) -> Json:
        user = next(
            (u for u in (self.owner, self.member) if int(u["id"]) == user_id),
            self._user(user_id, "someone"),
        )
        return {
            "id": str(self._dm_channel(user_id)),
            "type": 1,
            "recipients": [user],
            "last_message_id": None,
        }

    def _store_message(
        self,
        *,
        channel_id: int,
        author: Json,
        content: str,
        attachments: list[Json] | None = None,
        embeds: list[Json] | None = None,
        mentions: list[Json] | None = None,
        reference: MessageRecord | None = None,
        guild: bool = True,
        flags: int = 0,
        interaction: InteractionRecord | None = None,
    ) -> MessageRecord:
        message_id = self.new_id()
        payload: Json = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": list(mentions or []),
            "mention_roles": [],
            "attachments": list(attachments or []),
            "embeds": list(embeds or []),
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": [],
        }
        if guild:
            payload["guild_id"] = str(self.guild_id)
            payload["member"] = {k: v for k, v in self._member(author).items() if k != "user"}
        if reference is not None:
            payload["type"] = 19
            payload["message_reference"] = {
                "type": 0,
                "message_id": str(reference.id),
                "channel_id": reference.payload["channel_id"],
                **({"guild_id": str(self.guild_id)} if guild else {}),
            }
            payload["referenced_message"] = reference.payload
        if interaction is not None:
            payload["type"] = 20 if interaction.payload["data"].get("type") == 1 else 23
            payload["webhook_id"] = str(self.application_id)
            payload["application_id"] = str(self.application_id)
            payload["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": 2,
                "user": interaction.payload.get("member", {}).get("user")
                or interaction.payload.get("user"),
                "authorizing_integration_owners": interaction.payload[
                    "authorizing_integration_owners"
                ],
            }
        record = MessageRecord(payload=payload, history=[dict(payload)])
        self.messages[message_id] = record
        return record

    def _apply_edit(self, record: MessageRecord, body: Json) -> None:
        for key in ("content", "embeds", "components", "attachments"):
            if key in body and body[key] is not None:
                record.payload[key] = body[key]
        # The first edit of a deferred response ends the "thinking…" state.
        record.payload["flags"] = int(record.payload.get("flags") or 0) & ~LOADING
        record.payload["edited_timestamp"] = _now_iso()
        record.history.append(dict(record.payload))

    def _as_seen_by_bot(self, payload: Json) -> Json:
        """Discord hides content, attachments and embeds of guild messages from bots without the
        message-content intent, except when the bot is mentioned or wrote the message."""
        if self._intents & INTENT_MESSAGE_CONTENT or "guild_id" not in payload:
            return payload
        if payload["author"]["id"] == str(self.application_id):
            return payload
        if any(m["id"] == str(self.application_id) for m in payload["mentions"]):
            return payload
        return {**payload, "content": "", "attachments": [], "embeds": []}

    def _find_command(self, name: str, kind: int, *, dm: bool) -> tuple[Json, bool]:
        """The registered command, preferring guild-scoped ones (as Discord routes them)."""
        if not dm:
            for command in self.commands.get(self.guild_id, []):
                if command["name"] == name and command.get("type", 1) == kind:
                    return command, True
        for command in self.commands.get(None, []):
            if command["name"] == name and command.get("type", 1) == kind:
                return command, False
        raise AssertionError(f"fake Discord: command {name!r} (type {kind}) was never synced")

    async def _interact(
        self, data: Json, *, user: Json | None, permissions: int | None, dm: bool
    ) -> InteractionRecord:
        user = user or self.member
        interaction_id = self.new_id()
        token = f"itoken-{interaction_id}"
        payload: Json = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": 2,
            "token": token,
            "version": 1,
            "data": data,
            "locale": "en-US",
            "app_permissions": str(0x3F7FFF),
            "entitlements": [],
            "attachment_size_limit": 25 * 1024 * 1024,
        }
        if dm:
            payload["channel"] = self._dm_channel_payload(int(user["id"]))
            payload["channel_id"] = payload["channel"]["id"]
            payload["user"] = user
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"1": user["id"]}
        else:
            payload["guild_id"] = str(self.guild_id)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(self.guild_id), "locale": "en-US", "features": []}
            payload["channel"] = self._channel_payload()
            payload["channel_id"] = str(self.channel_id)
            perms = 0x6_4400 if permissions is None else permissions  # read/send, no manage
            payload["member"] = self._member(user, permissions=perms)
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": str(self.guild_id)}
        record = InteractionRecord(
            id=interaction_id, token=token, payload=payload, dispatched_at=time.monotonic()
        )
        self.interactions[token] = record
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def embed_text(message: Json) -> str:
    """Everything a user reads in a message: content, embed titles, descriptions and fields."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        for f in embed.get("fields") or []:
            parts += [f.get("name") or "", f.get("value") or ""]
        parts.append((embed.get("footer") or {}).get("text") or "")
    return "\n".join(p for p in parts if p)
