"""The OpenAI Realtime API (GA protocol) on a local websocket, as livekit-plugins-openai uses it.

:class:`RealtimeServer` is mounted on :class:`~openai_server.LocalOpenAIServer`'s app at
``GET /v1/realtime?model=...``, where the plugin's ``process_base_url`` sends a
``base_url`` of ``http://127.0.0.1:<port>/v1``. Each websocket is one realtime session
with its own conversation. The model's part comes from the same
:class:`~openai_server.Scenario` as the chat completions: the conversation is turned into
chat-completions ``messages`` (session instructions first, a response's ``instructions``
last, as a system message) and answered with ``scenario.answer(messages)``.

The user's side is scripted on the server, as OpenAI's server-side VAD and transcription
would produce it: :meth:`RealtimeServer.user_says`. Every client event is recorded, with
whether a response was in progress and whether the user was speaking when it arrived.

Client events handled: ``session.update``; ``conversation.item.create`` (message,
function_call, function_call_output; ``previous_item_id``), ``.delete``, ``.truncate``,
``.retrieve``; ``response.create``, ``response.cancel``; ``input_audio_buffer.append``,
``.commit``, ``.clear``. Anything else, or a malformed event, gets the ``error`` event
OpenAI sends. Server events sent: ``session.created``, ``session.updated``,
``conversation.item.added``, ``.done``, ``.deleted``, ``.truncated``, ``.retrieved``,
``.input_audio_transcription.completed``, ``input_audio_buffer.speech_started``,
``.speech_stopped``, ``.committed``, ``.cleared``, ``response.created``,
``response.output_item.added``, ``.done``, ``response.content_part.added``, ``.done``,
``response.output_audio_transcript.delta``, ``.done``, ``response.output_audio.delta``,
``.done`` (``response.output_text.*`` for a text-only session),
``response.function_call_arguments.delta``, ``.done``, ``response.done`` and ``error``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from openai_server import Message, Scenario

Event = dict[str, Any]
Item = dict[str, Any]

SAMPLE_RATE = 24000
"""Output and input audio: PCM16, 24 kHz, mono."""

CHUNK_SECONDS = 0.1
"""Audio per ``response.output_audio.delta``."""

_AUDIO_FORMAT = {"type": "audio/pcm", "rate": SAMPLE_RATE}
_ALPHABET = string.ascii_letters + string.digits


def _new_id(prefix: str, length: int = 16) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


class ClientError(Exception):
    """A client event the server refuses: answered with an ``error`` event."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


@dataclass
class ClientEvent:
    """One event a client sent.

    Attributes:
        at: ``time.time()`` when it arrived.
        type: Its ``type``.
        payload: The whole event, as sent.
        response_active: Whether a response was in progress when it arrived (for a
            ``response.create``: whether the conversation was busy).
        user_speaking: Whether the scripted user was speaking when it arrived.
    """

    at: float
    type: str
    payload: Event
    response_active: bool
    user_speaking: bool


@dataclass
class Connection:
    """One websocket a client opened.

    Attributes:
        at: ``time.time()`` of the upgrade.
        path: The request path (``/v1/realtime``).
        model: The ``model`` query parameter.
        host: The ``Host`` header the client sent.
        peer: The client's address.
    """

    at: float
    path: str
    model: str
    host: str
    peer: str


@dataclass
class ResponseRecord:
    """One response the model generated.

    Attributes:
        id: ``resp_...``.
        event_id: The ``response.create`` event that asked for it; None when the server's
            turn detection started it.
        instructions: The response's own instructions, if any.
        tool_choice: The response's ``tool_choice``, if any.
        messages: The conversation as the scenario saw it (chat-completions ``messages``).
        rule: The scenario rule that answered; None if none matched.
        text: What the model said, up to where it was cancelled.
        tool_calls: The ``(call_id, name)`` of each function call.
        status: ``in_progress``, ``completed``, ``cancelled`` or ``failed``.
        reason: Why it was cancelled (``client_cancelled``, ``turn_detected``) or failed.
    """

    id: str
    event_id: str | None
    instructions: str | None
    tool_choice: Any
    messages: list[Message] = field(default_factory=list)
    rule: str | None = None
    text: str = ""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    status: str = "in_progress"
    reason: str | None = None


@dataclass
class _Response:
    record: ResponseRecord
    metadata: Any
    modalities: list[str]
    tools: list[dict[str, Any]] | None
    output: list[Item] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class RealtimeServer:
    """The realtime websocket endpoint and the scripted user.

    Args:
        scenario: Answers the model's part.
        pace: How many times faster than real time audio is generated (the client plays
            it in real time, so a response finishes generating before it finishes playing).

    Attributes:
        scenario: As given.
        pace: As given; may be changed between responses.
        events: Every client event received, on every connection, in order, with whether a
            response was active and whether the user was speaking when it arrived.
        connections: Every websocket opened.
        responses: Every response generated, in order.
    """

    def __init__(self, scenario: Scenario, *, pace: float = 2.0) -> None:
        if pace <= 0:
            raise ValueError("pace must be positive")
        self.scenario = scenario
        self.pace = pace
        self.events: list[ClientEvent] = []
        self.connections: list[Connection] = []
        self.responses: list[ResponseRecord] = []
        self._sessions: list[_RealtimeSession] = []
        self._connected = asyncio.Event()

    def mount(self, app: web.Application) -> None:
        """Serve ``GET /v1/realtime`` on ``app``; close open sockets when it shuts down."""
        app.router.add_get("/v1/realtime", self._handle)
        app.on_shutdown.append(self._on_shutdown)

    @property
    def conversation(self) -> list[Item]:
        """The items of the newest session's conversation, in order."""
        return [_public(i) for i in self._sessions[-1].items] if self._sessions else []

    @property
    def response_active(self) -> bool:
        """Whether the newest session is generating a response."""
        return bool(self._sessions) and self._sessions[-1].active is not None

    @property
    def user_speaking(self) -> bool:
        """Whether the scripted user is speaking (between speech started and stopped)."""
        return bool(self._sessions) and self._sessions[-1].user_speaking

    def received(self, event_type: str) -> list[Event]:
        """The payloads of the client events of ``event_type``, in order."""
        return [e.payload for e in self.events if e.type == event_type]

    async def user_says(self, text: str, *, duration: float = 0.3) -> None:
        """The user says ``text``, as OpenAI's server-side VAD and transcription report it.

        Sends ``input_audio_buffer.speech_started`` (cancelling the response in progress
        when the session's turn detection has ``interrupt_response``), waits ``duration``
        seconds, sends ``speech_stopped``, ``committed``, the user's item and its
        transcription, then starts the response when turn detection has
        ``create_response``.

        Raises:
            RuntimeError: No client is connected, or its session has no turn detection
                (OpenAI then reports no speech at all).
        """
        session = await self._current_session()
        await session.user_says(text, duration=duration)

    async def _current_session(self, timeout: float = 5.0) -> _RealtimeSession:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
            session = self._sessions[-1]
            await asyncio.wait_for(session.configured.wait(), timeout)
        except asyncio.TimeoutError:
            raise RuntimeError("no realtime client connected and configured") from None
        return session

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        model = request.query.get("model", "")
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _http_error(401, "You didn't provide an API key.", "invalid_api_key")
        if not model:
            return _http_error(400, "Missing required parameter: 'model'.", None)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections.append(
            Connection(
                at=time.time(),
                path=request.path,
                model=model,
                host=request.host,
                peer=str(request.remote),
            )
        )
        session = _RealtimeSession(self, ws, model=model)
        self._sessions.append(session)
        self._connected.set()
        try:
            await session.run()
        finally:
            await session.close()
        return ws

    async def _on_shutdown(self, app: web.Application) -> None:
        for session in self._sessions:
            await session.close()
            await session.ws.close()


class _RealtimeSession:
    """One websocket: the session's configuration, its conversation and its responses."""

    def __init__(self, server: RealtimeServer, ws: web.WebSocketResponse, *, model: str) -> None:
        self.server = server
        self.ws = ws
        self.id = _new_id("sess_")
        self.conversation_id = _new_id("conv_")
        self.items: list[Item] = []
        self.active: _Response | None = None
        self.user_speaking = False
        self.configured = asyncio.Event()
        self.config: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
            "audio": {
                "input": {
                    "format": dict(_AUDIO_FORMAT),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 200,
                        "idle_timeout_ms": None,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {"format": dict(_AUDIO_FORMAT), "voice": "alloy", "speed": 1.0},
            },
        }
        self._input_audio = bytearray()
        self._input_ms = 0  # input audio received since the session began, for VAD offsets
        self._send_lock = asyncio.Lock()

    # -- transport --------------------------------------------------------------------

    async def run(self) -> None:
        await self.send("session.created", session=self.config)
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                event = json.loads(msg.data)
            except ValueError:
                await self.send_error(ClientError("Invalid JSON.", code="invalid_json"), None)
                continue
            if not isinstance(event, dict):
                await self.send_error(ClientError("Events must be JSON objects."), None)
                continue
            self.server.events.append(
                ClientEvent(
                    at=time.time(),
                    type=str(event.get("type")),
                    payload=event,
                    response_active=self.active is not None,
                    user_speaking=self.user_speaking,
                )
            )
            try:
                await self.dispatch(event)
            except ClientError as e:
                await self.send_error(e, event.get("event_id"))

    async def close(self) -> None:
        if self.active is not None and self.active.task is not None:
            self.active.task.cancel()
            await asyncio.gather(self.active.task, return_exceptions=True)
            self.active = None

    async def send(self, event_type: str, **fields: Any) -> None:
        async with self._send_lock:
            await self._send_locked(event_type, **fields)

    async def _send_locked(self, event_type: str, **fields: Any) -> None:
        if self.ws.closed:
            return
        event = {"type": event_type, "event_id": _new_id("event_"), **fields}
        try:
            await self.ws.send_str(json.dumps(event))
        except ConnectionError:
            pass  # the client went away; its events are no longer awaited

    async def send_error(self, error: ClientError, client_event_id: Any) -> None:
        await self.send(
            "error",
            error={
                "type": "invalid_request_error",
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "event_id": client_event_id if isinstance(client_event_id, str) else None,
            },
        )

    # -- client events ------------------------------------------------------------------

    async def dispatch(self, event: Event) -> None:
        handlers = {
            "session.update": self.on_session_update,
            "conversation.item.create": self.on_item_create,
            "conversation.item.delete": self.on_item_delete,
            "conversation.item.truncate": self.on_item_truncate,
            "conversation.item.retrieve": self.on_item_retrieve,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
            "input_audio_buffer.append": self.on_audio_append,
            "input_audio_buffer.commit": self.on_audio_commit,
            "input_audio_buffer.clear": self.on_audio_clear,
        }
        handler = handlers.get(str(event.get("type")))
        if handler is None:
            supported = ", ".join(f"'{t}'" for t in handlers)
            raise ClientError(
                f"Invalid value: '{event.get('type')}'. Supported values are: {supported}.",
                code="invalid_value",
                param="type",
            )
        await handler(event)

    async def on_session_update(self, event: Event) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            raise _missing("session")
        if update.get("type") != "realtime":
            raise _missing("session.type")
        for key, value in update.items():
            if key == "audio" and isinstance(value, dict):
                audio = self.config["audio"]
                for direction in ("input", "output"):
                    if isinstance(value.get(direction), dict):
                        # nested settings (turn_detection, transcription) are replaced whole
                        audio[direction].update(value[direction])
            elif key not in ("id", "object"):
                self.config[key] = value
        self.configured.set()
        await self.send("session.updated", session=self.config)

    async def on_item_create(self, event: Event) -> None:
        item = _validated_item(event.get("item"))
        item_id = item.setdefault("id", _new_id("item_"))
        if any(i["id"] == item_id for i in self.items):
            raise ClientError(
                f"Item with id '{item_id}' already exists in the conversation.",
                code="item_create_duplicate_item_id",
                param="item.id",
            )
        if item["type"] == "function_call_output" and not any(
            i["type"] == "function_call" and i.get("call_id") == item["call_id"] for i in self.items
        ):
            raise ClientError(
                f"Tool call ID '{item['call_id']}' not found in conversation.",
                code="invalid_tool_call_id",
                param="item.call_id",
            )
        item.update(object="realtime.item", status="completed")
        previous = self.insert(item, event.get("previous_item_id"))
        await self.send("conversation.item.added", previous_item_id=previous, item=item)
        await self.send("conversation.item.done", previous_item_id=previous, item=item)

    async def on_item_delete(self, event: Event) -> None:
        item_id = event.get("item_id")
        item = self.existing(item_id, "delete")
        self.items.remove(item)
        await self.send("conversation.item.deleted", item_id=item_id)

    async def on_item_truncate(self, event: Event) -> None:
        item_id = event.get("item_id")
        item = self.existing(item_id, "truncate")
        part = (item.get("content") or [{}])[0]
        if item.get("role") != "assistant" or part.get("type") != "output_audio":
            raise ClientError(
                "Only assistant messages with audio can be truncated.",
                code="invalid_value",
                param="item_id",
            )
        end_ms = event.get("audio_end_ms")
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise ClientError("audio_end_ms must be a non-negative integer.", param="audio_end_ms")
        audio_ms = item.get("_audio_ms", 0)
        # the transcript keeps what the user heard: here text is proportional to audio
        share = min(1.0, end_ms / audio_ms) if audio_ms else 0.0
        transcript = part.get("transcript") or ""
        part["transcript"] = transcript[: round(len(transcript) * share)]
        await self.send(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=event.get("content_index", 0),
            audio_end_ms=end_ms,
        )

    async def on_item_retrieve(self, event: Event) -> None:
        item = self.existing(event.get("item_id"), "retrieve")
        await self.send("conversation.item.retrieved", item=_public(item))

    async def on_response_create(self, event: Event) -> None:
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise ClientError("Invalid type for 'response': expected an object.", param="response")
        for option, default in (("conversation", "auto"), ("input", None)):
            if params.get(option, default) != default:
                # out-of-band responses and custom inputs: not part of this local server
                raise ClientError(
                    f"'response.{option}' is not supported by this server.",
                    code="unsupported_value",
                    param=f"response.{option}",
                )
        if self.active is not None:
            raise ClientError(
                "Conversation already has an active response in progress: "
                f"{self.active.record.id}. Wait until the response is finished before "
                "creating a new one.",
                code="conversation_already_has_active_response",
            )
        self.start_response(params, event_id=event.get("event_id"))

    async def on_response_cancel(self, event: Event) -> None:
        response_id = event.get("response_id")
        if self.active is None or (response_id and response_id != self.active.record.id):
            raise ClientError(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
            )
        await self.cancel_active("client_cancelled")

    async def on_audio_append(self, event: Event) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise _missing("audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except ValueError:
            raise ClientError(
                "Invalid 'audio'. Expected base64-encoded audio.", param="audio"
            ) from None
        self._input_audio += pcm
        self._input_ms += len(pcm) * 1000 // (2 * SAMPLE_RATE)

    async def on_audio_commit(self, event: Event) -> None:
        buffered_ms = len(self._input_audio) * 1000 / (2 * SAMPLE_RATE)
        if buffered_ms < 100:
            raise ClientError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        self._input_audio.clear()
        # this server does not recognise audio: the item has no transcript
        await self.commit_user_item(_new_id("item_"), transcript=None)

    async def on_audio_clear(self, event: Event) -> None:
        self._input_audio.clear()
        await self.send("input_audio_buffer.cleared")

    # -- conversation ------------------------------------------------------------------

    def find(self, item_id: Any) -> Item | None:
        return next((i for i in self.items if i["id"] == item_id), None)

    def existing(self, item_id: Any, action: str) -> Item:
        """The item with ``item_id``, or the error OpenAI sends to ``action`` an unknown one."""
        item = self.find(item_id)
        if item is None:
            raise ClientError(
                f"Error {action.removesuffix('e')}ing item: the item with id '{item_id}' "
                "does not exist.",
                code=f"item_{action}_invalid_item_id",
                param="item_id",
            )
        return item

    def insert(self, item: Item, previous_item_id: Any) -> str | None:
        """Insert ``item`` after ``previous_item_id`` (None: at the end; ``root``: first)."""
        if previous_item_id is None:
            index = len(self.items)
        elif previous_item_id == "root":
            index = 0
        else:
            previous = self.find(previous_item_id)
            if previous is None:
                raise ClientError(
                    f"Error adding item: the previous item with id '{previous_item_id}' does "
                    "not exist.",
                    code="item_create_invalid_previous_item_id",
                    param="previous_item_id",
                )
            index = self.items.index(previous) + 1
        self.items.insert(index, item)
        return self.items[index - 1]["id"] if index > 0 else None

    async def commit_user_item(self, item_id: str, *, transcript: str | None) -> None:
        item: Item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = self.insert(item, None)
        await self.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        await self.send("conversation.item.added", previous_item_id=previous, item=item)
        await self.send("conversation.item.done", previous_item_id=previous, item=item)
        # the model hears the audio whether or not the client asked for a transcription
        item["content"][0]["transcript"] = transcript
        if transcript is not None and self.config["audio"]["input"].get("transcription"):
            await self.send(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": max(1, math.ceil(len(transcript) / 15))},
            )

    def chat_messages(self, response_instructions: str | None) -> list[Message]:
        """The conversation as chat-completions ``messages``, for the scenario."""
        messages: list[Message] = []
        if self.config.get("instructions"):
            messages.append({"role": "system", "content": self.config["instructions"]})
        for item in self.items:
            if item["type"] == "message":
                messages.append({"role": item["role"], "content": _item_text(item)})
            elif item["type"] == "function_call":
                call = {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments") or ""},
                }
                last = messages[-1] if messages else None
                if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                    last["tool_calls"].append(call)  # calls of one turn go in one message
                else:
                    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            elif item["type"] == "function_call_output":
                messages.append(
                    {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
                )
        if response_instructions:
            messages.append({"role": "system", "content": response_instructions})
        return messages

    # -- the user's turns (server-side VAD) --------------------------------------------

    async def user_says(self, text: str, *, duration: float) -> None:
        turn_detection = self.config["audio"]["input"].get("turn_detection")
        if not turn_detection:
            raise RuntimeError("the session has no turn detection: OpenAI reports no speech")
        item_id = _new_id("item_")
        self.user_speaking = True
        try:
            await self.send(
                "input_audio_buffer.speech_started", audio_start_ms=self._input_ms, item_id=item_id
            )
            if turn_detection.get("interrupt_response", True) and self.active is not None:
                await self.cancel_active("turn_detected")
            await asyncio.sleep(duration)
            self._input_ms += int(duration * 1000)
        finally:
            self.user_speaking = False
        await self.send(
            "input_audio_buffer.speech_stopped", audio_end_ms=self._input_ms, item_id=item_id
        )
        await self.commit_user_item(item_id, transcript=text)
        if turn_detection.get("create_response", True) and self.active is None:
            self.start_response({}, event_id=None)

    # -- responses -----------------------------------------------------------------------

    def start_response(self, params: dict[str, Any], *, event_id: Any) -> None:
        record = ResponseRecord(
            id=_new_id("resp_"),
            event_id=event_id if isinstance(event_id, str) else None,
            instructions=params.get("instructions"),
            tool_choice=params.get("tool_choice"),
        )
        response = _Response(
            record=record,
            metadata=params.get("metadata"),
            modalities=params.get("output_modalities") or self.config["output_modalities"],
            tools=params.get("tools"),
        )
        self.server.responses.append(record)
        self.active = response
        response.task = asyncio.create_task(self._generate(response), name="realtime_response")

    async def cancel_active(self, reason: str) -> None:
        """Stop the response in progress; returns once its ``response.done`` is sent."""
        response = self.active
        if response is None:
            return
        response.record.reason = reason
        response.cancelled.set()
        if response.task is not None:
            await asyncio.wait([response.task])

    def _describe(self, response: _Response, *, usage: Any = None) -> Event:
        record = response.record
        details: Any = None
        if record.status == "cancelled":
            details = {"type": "cancelled", "reason": record.reason}
        elif record.status == "failed":
            details = {
                "type": "failed",
                "error": {"type": "invalid_request_error", "code": record.reason},
            }
        return {
            "object": "realtime.response",
            "id": record.id,
            "status": record.status,
            "status_details": details,
            "output": [_public(i) for i in response.output],
            "conversation_id": self.conversation_id,
            "output_modalities": response.modalities,
            "max_output_tokens": self.config.get("max_output_tokens", "inf"),
            "audio": {"output": self.config["audio"]["output"]},
            "usage": usage,
            "metadata": response.metadata,
        }

    async def _generate(self, response: _Response) -> None:
        record = response.record
        await self.send("response.created", response=self._describe(response))
        record.messages = messages = self.chat_messages(record.instructions)
        text, calls = "", []
        try:
            record.rule, answer = self.server.scenario.answer(messages)
            text, calls = answer.text, list(answer.tool_calls)
        except LookupError:
            record.status, record.reason = "failed", "no_scenario_rule_matches"
        if (record.tool_choice or self.config.get("tool_choice")) == "none":
            calls = []  # the model may not call tools in this response
        known = {t.get("name") for t in (response.tools or self.config.get("tools") or [])}
        if any(name not in known for name, _ in calls):
            record.status, record.reason = "failed", "scenario_calls_an_unknown_tool"
        if record.status != "failed":
            if text:
                await self._stream_message(response, text)
            for name, arguments in calls:
                if response.cancelled.is_set():
                    break
                await self._stream_function_call(response, name, arguments)
            record.status = "cancelled" if response.cancelled.is_set() else "completed"
        usage = _usage(messages, text)
        async with self._send_lock:
            # nothing may be sent between the response ending and its response.done
            self.active = None
            await self._send_locked("response.done", response=self._describe(response, usage=usage))

    async def _add_output_item(self, response: _Response, item: Item) -> int:
        response.output.append(item)
        index = len(response.output) - 1
        previous = self.insert(item, None)
        await self.send(
            "response.output_item.added",
            response_id=response.record.id,
            output_index=index,
            item=_public(item),
        )
        await self.send("conversation.item.added", previous_item_id=previous, item=_public(item))
        return index

    async def _finish_output_item(self, response: _Response, item: Item, index: int) -> None:
        previous = None
        if item in self.items and (position := self.items.index(item)) > 0:
            previous = self.items[position - 1]["id"]
        await self.send(
            "response.output_item.done",
            response_id=response.record.id,
            output_index=index,
            item=_public(item),
        )
        await self.send("conversation.item.done", previous_item_id=previous, item=_public(item))

    async def _stream_message(self, response: _Response, text: str) -> None:
        record = response.record
        audio = "audio" in response.modalities
        item: Item = {
            "id": _new_id("item_"),
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
            "_audio_ms": 0,
        }
        index = await self._add_output_item(response, item)
        ids = {"response_id": record.id, "item_id": item["id"], "output_index": index}
        part: dict[str, Any] = (
            {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        )
        await self.send("response.content_part.added", **ids, content_index=0, part=dict(part))
        item["content"] = [
            {"type": "output_audio", "transcript": ""}
            if audio
            else {"type": "output_text", "text": ""}
        ]
        samples = int(len(text) * self.server.scenario.seconds_per_char * SAMPLE_RATE)
        chunk = int(CHUNK_SECONDS * SAMPLE_RATE)
        steps = max(1, math.ceil(samples / chunk))
        key = "transcript" if audio else "text"
        for step in range(steps):
            delta = text[len(text) * step // steps : len(text) * (step + 1) // steps]
            part[key] += delta
            item["content"][0][key] = part[key]
            record.text = part[key]
            if audio:
                n = min(chunk, samples - step * chunk)
                await self.send(
                    "response.output_audio_transcript.delta", **ids, content_index=0, delta=delta
                )
                await self.send(
                    "response.output_audio.delta",
                    **ids,
                    content_index=0,
                    delta=base64.b64encode(b"\x00\x00" * max(n, 0)).decode(),
                )
                item["_audio_ms"] += max(n, 0) * 1000 // SAMPLE_RATE
            else:
                await self.send("response.output_text.delta", **ids, content_index=0, delta=delta)
            if step < steps - 1 and await _cancelled_within(
                response.cancelled, CHUNK_SECONDS / self.server.pace
            ):
                break
        if audio:
            await self.send("response.output_audio.done", **ids, content_index=0)
            await self.send(
                "response.output_audio_transcript.done",
                **ids,
                content_index=0,
                transcript=part[key],
            )
        else:
            await self.send("response.output_text.done", **ids, content_index=0, text=part[key])
        await self.send("response.content_part.done", **ids, content_index=0, part=dict(part))
        item["status"] = "incomplete" if response.cancelled.is_set() else "completed"
        await self._finish_output_item(response, item, index)

    async def _stream_function_call(
        self, response: _Response, name: str, arguments: dict[str, Any]
    ) -> None:
        call_id = _new_id("call_")
        item: Item = {
            "id": _new_id("item_"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        }
        index = await self._add_output_item(response, item)
        encoded = json.dumps(arguments)
        ids = {"response_id": response.record.id, "item_id": item["id"], "output_index": index}
        await self.send(
            "response.function_call_arguments.delta", **ids, call_id=call_id, delta=encoded
        )
        await self.send(
            "response.function_call_arguments.done",
            **ids,
            call_id=call_id,
            name=name,
            arguments=encoded,
        )
        item.update(arguments=encoded, status="completed")
        response.record.tool_calls.append((call_id, name))
        await self._finish_output_item(response, item, index)


async def _cancelled_within(cancelled: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(cancelled.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


def _missing(param: str) -> ClientError:
    return ClientError(
        f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param
    )


def _validated_item(item: Any) -> Item:
    if not isinstance(item, dict):
        raise _missing("item")
    item = copy.deepcopy(item)
    kind = item.get("type")
    required = {
        "message": ("role", "content"),
        "function_call": ("call_id", "name", "arguments"),
        "function_call_output": ("call_id", "output"),
    }
    if kind not in required:
        raise ClientError(
            f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call' and "
            "'function_call_output'.",
            code="invalid_value",
            param="item.type",
        )
    for name in required[kind]:
        if item.get(name) is None:
            raise _missing(f"item.{name}")
    if kind == "message" and item["role"] not in ("user", "assistant", "system"):
        raise ClientError(
            f"Invalid value: '{item['role']}'. Supported values are: 'user', 'assistant' and "
            "'system'.",
            code="invalid_value",
            param="item.role",
        )
    return item


def _item_text(item: Item) -> str:
    parts = []
    for part in item.get("content") or []:
        if isinstance(part, dict):
            parts.append(part.get("text") or part.get("transcript") or "")
    return " ".join(p for p in parts if p)


def _public(item: Item) -> Item:
    """The item as OpenAI sends it (without this server's bookkeeping)."""
    return {k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("_")}


def _usage(messages: list[Message], text: str) -> dict[str, Any]:
    # about four characters a token, as a stand-in for a tokenizer
    input_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1
    text_tokens = len(text) // 4
    audio_tokens = len(text) // 2
    return {
        "total_tokens": input_tokens + text_tokens + audio_tokens,
        "input_tokens": input_tokens,
        "output_tokens": text_tokens + audio_tokens,
        "input_token_details": {
            "text_tokens": input_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
    }


def _http_error(status: int, message: str, code: str | None) -> web.Response:
    return web.json_response(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        },
        status=status,
    )
