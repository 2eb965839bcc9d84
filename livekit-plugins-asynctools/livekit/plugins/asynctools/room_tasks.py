"""Background calls published into the LiveKit room, for front ends to show and steer.

Opt-in: :func:`publish_tasks` sends each background call's start, updates (with their
structured progress), replies and end on a text-stream topic, and registers two RPC
methods on the agent's participant, so a web or mobile front end can list the running
calls and cancel one. The wire format is versioned (``"v": 1``) and documented in the
plugin's README ("Background tasks in the room").

Nothing a tool received or returned is published unless the developer's ``redact`` hook
allows it: by default a call shows only its function name, its progress and the update
messages the tool wrote for the user.

Example::

    from livekit.plugins.asynctools import publish_tasks

    async def entrypoint(ctx: JobContext) -> None:
        session = AgentSession(llm=...)
        await session.start(MyAgent(), room=ctx.room)
        publish_tasks(session, ctx.room)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from livekit import rtc
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from .default_texts import CANCEL_REASON_FROM_ROOM
from .events import ReplyEvent, TaskEnded, TaskEvents, TaskStarted, TaskUpdated, task_events
from .log import logger
from .session_scope import existing_scope

if TYPE_CHECKING:
    from livekit.agents import AgentSession

SCHEMA_VERSION = 1
"""Version of the published messages and of the RPC payloads (their ``"v"`` field)."""

TASKS_TOPIC = "lk.asynctools.tasks"
"""Text-stream topic of the published task messages."""

RPC_LIST_TASKS = "asynctools.list_tasks"
"""RPC method: payload ``{"v": 1}``; returns ``{"v": 1, "tasks": [TASK, ...]}``."""

RPC_CANCEL_TASK = "asynctools.cancel_task"
"""RPC method: payload ``{"v": 1, "call_id": "..."}``; returns
``{"v": 1, "call_id": "...", "status": "cancelled"}``."""

MALFORMED = 400
"""RPC error code: the payload is not a JSON object with the fields the method needs."""
FORBIDDEN = 403
"""RPC error code: the caller may not do this (see :class:`TaskRequest`)."""
NOT_FOUND = 404
"""RPC error code: this session runs no call with that call id (it may have ended)."""
NOT_CANCELLABLE = 409
"""RPC error code: the call's policy or its speech refuses cancellation."""
UNSUPPORTED_VERSION = 426
"""RPC error code: the payload's ``"v"`` is not :data:`SCHEMA_VERSION`."""

CLOSE_WAIT = 2.0
"""Seconds closing waits for the messages still queued to be sent."""

Field = Literal["arguments", "result"]
Redact = Callable[[str, Field, Any], Any]
"""``redact(function_name, field, value)``: what to publish of a call's ``arguments``
(the model's arguments, parsed from JSON) or ``result`` (what the tool returned);
``None`` publishes nothing. Must return a JSON-serialisable value."""


@dataclass(frozen=True)
class TaskRequest:
    """An RPC request from the room, as the ``authorize`` hook sees it.

    Attributes:
        action: ``list`` or ``cancel``.
        caller_identity: Identity of the participant who called.
        linked_identity: Identity of the participant the session is linked to, if any.
        call_id: For ``cancel``, the call to cancel (always one of this session's).
        function_name: For ``cancel``, that call's tool.
    """

    action: Literal["list", "cancel"]
    caller_identity: str
    linked_identity: str | None
    call_id: str | None = None
    function_name: str | None = None


Authorize = Callable[[TaskRequest], "bool | Awaitable[bool]"]


def default_authorize(request: TaskRequest) -> bool:
    """Anyone in the room may list; only the linked participant may cancel.

    Example::

        def authorize(request: TaskRequest) -> bool:
            # supervisors may cancel too
            return default_authorize(request) or request.caller_identity.startswith("sup-")
    """
    if request.action == "list":
        return True
    linked = request.linked_identity
    return linked is not None and request.caller_identity == linked


@dataclass
class _Task:
    """What the room knows of one running call."""

    call_id: str
    function: str
    toolset: str
    started_at: float
    timeout: float | None
    cancellable: bool
    arguments: Any = None
    status: str = "running"
    progress: dict[str, Any] = field(default_factory=dict)
    last_update: str | None = None
    last_update_delivery: str | None = None
    result: Any = None

    def as_json(self) -> dict[str, Any]:
        task: dict[str, Any] = {
            "call_id": self.call_id,
            "function": self.function,
            "toolset": self.toolset,
            "status": self.status,
            "started_at": self.started_at,
            "timeout": self.timeout,
            "cancellable": self.cancellable,
            "progress": self.progress,
            "last_update": self.last_update,
            "last_update_delivery": self.last_update_delivery,
        }
        if self.arguments is not None:
            task["arguments"] = self.arguments
        if self.result is not None:
            task["result"] = self.result
        return task


class TaskPublisher:
    """Publishes one session's background calls into its room; made by :func:`publish_tasks`.

    It stops by itself when the session closes; :meth:`aclose` stops it earlier.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        room: rtc.Room,
        *,
        redact: Redact | None,
        authorize: Authorize,
        topic: str,
    ) -> None:
        self._session = session
        self._room = room
        self._redact = redact
        self._authorize = authorize
        self._topic = topic
        self._tasks: dict[str, _Task] = {}
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._sender = asyncio.create_task(self._send_all(), name="asynctools.room_tasks.send")
        self._closed = False
        # numbers the messages: a front end reads streams that may finish out of order
        self._seq = 0
        self._events: TaskEvents = task_events(session)
        self._listeners: list[tuple[str, Callable[[Any], None]]] = [
            ("task_started", self._on_started),
            ("task_updated", self._on_updated),
            ("task_ended", self._on_ended),
            *((f"reply_{s}", self._on_reply) for s in ("scheduled", "heard", "interrupted")),
            ("reply_not_given", self._on_reply),
        ]
        for name, listener in self._listeners:
            self._events.on(name, listener)  # type: ignore[arg-type]
        participant = room.local_participant
        participant.register_rpc_method(RPC_LIST_TASKS, self._rpc_list)
        participant.register_rpc_method(RPC_CANCEL_TASK, self._rpc_cancel)
        session.on("close", self._on_session_close)

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """The running calls, as ``asynctools.list_tasks`` returns them (oldest first)."""
        return [t.as_json() for t in self._tasks.values()]

    async def aclose(self) -> None:
        """Stop publishing: unregister the RPC methods, send what is queued (at most
        :data:`CLOSE_WAIT` seconds) and detach from the session."""
        self._stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._sender), CLOSE_WAIT)
        except asyncio.TimeoutError:
            logger.warning("room task messages still unsent at close, dropped")
            self._sender.cancel()

    # -- events of the session's calls -> messages on the topic

    def _on_started(self, ev: TaskStarted) -> None:
        call = (scope := existing_scope(self._session)) and scope.get(ev.call_id)
        task = self._tasks[ev.call_id] = _Task(
            call_id=ev.call_id,
            function=ev.function_name,
            toolset=ev.toolset_id,
            started_at=call.started_at if call else time.time(),
            timeout=ev.timeout,
            cancellable=call.policy.cancellable if call else True,
            arguments=self._redacted(ev.function_name, "arguments", _parsed(ev.arguments)),
        )
        self._publish("started", task)

    def _on_updated(self, ev: TaskUpdated) -> None:
        if (task := self._tasks.get(ev.call_id)) is None:
            return
        task.progress = ev.progress.as_dict()
        task.last_update, task.last_update_delivery = ev.message, ev.delivery
        self._publish("updated", task)

    def _on_ended(self, ev: TaskEnded) -> None:
        if (task := self._tasks.pop(ev.call_id, None)) is None:
            return
        task.status = ev.status
        if ev.status == "done" and ev.value is not None:
            task.result = self._redacted(task.function, "result", ev.value)
        self._publish("ended", task)

    def _on_reply(self, ev: ReplyEvent) -> None:
        call_ids = sorted({_call_id_of(u) for u in ev.update_ids})
        self._send({"event": "reply", "status": ev.status, "call_ids": call_ids})

    def _publish(self, event: str, task: _Task) -> None:
        self._send({"event": event, "task": task.as_json()})

    def _send(self, message: dict[str, Any]) -> None:
        if not self._closed:
            self._seq += 1
            self._outbox.put_nowait(
                json.dumps({"v": SCHEMA_VERSION, "seq": self._seq, "time": time.time(), **message})
            )

    async def _send_all(self) -> None:
        # one sender, so a front end reads the messages in the order things happened
        while (text := await self._outbox.get()) is not None:
            if not self._room.isconnected():
                continue
            try:
                await self._room.local_participant.send_text(text, topic=self._topic)
            except Exception as e:  # the room's trouble must never reach the conversation
                logger.warning("could not publish a room task message", extra={"error": str(e)})

    def _redacted(self, function_name: str, field: Field, value: Any) -> Any:
        if self._redact is None:
            return None
        try:
            value = self._redact(function_name, field, value)
            json.dumps(value)
        except Exception:
            logger.exception(
                "the redact hook failed: nothing of this field is published",
                extra={"function": function_name, "field": field},
            )
            return None
        return value

    # -- RPC from the room

    async def _rpc_list(self, data: rtc.RpcInvocationData) -> str:
        _payload(data, ())
        await self._check(TaskRequest("list", data.caller_identity, self._linked_identity()))
        return json.dumps({"v": SCHEMA_VERSION, "tasks": self.tasks})

    async def _rpc_cancel(self, data: rtc.RpcInvocationData) -> str:
        call_id = _payload(data, ("call_id",))["call_id"]
        scope = existing_scope(self._session)
        call = scope.get(call_id) if scope is not None else None
        # who asks is checked first: a refused caller learns nothing of the session's calls
        await self._check(
            TaskRequest(
                "cancel",
                data.caller_identity,
                self._linked_identity(),
                call_id=call_id,
                function_name=call.function_call.name if call is not None else None,
            )
        )
        if call is None:
            raise rtc.RpcError(NOT_FOUND, f"no running task has call_id {call_id}")
        if not call.policy.cancellable:
            raise rtc.RpcError(NOT_CANCELLABLE, f"`{call.function_call.name}` may not be cancelled")
        if not call.ctx.speech_handle.allow_interruptions:
            raise rtc.RpcError(NOT_CANCELLABLE, "the call disallowed interruptions")
        logger.info(
            "background call cancelled from the room",
            extra={"call_id": call_id, "caller": data.caller_identity},
        )
        await call.cancel(CANCEL_REASON_FROM_ROOM)
        return json.dumps({"v": SCHEMA_VERSION, "call_id": call_id, "status": "cancelled"})

    async def _check(self, request: TaskRequest) -> None:
        try:
            allowed = self._authorize(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception:
            logger.exception("the authorize hook failed: request refused")
            allowed = False
        if allowed is not True:
            raise rtc.RpcError(FORBIDDEN, f"{request.caller_identity} may not {request.action}")

    def _linked_identity(self) -> str | None:
        try:
            participant = self._session.room_io.linked_participant
        except RuntimeError:  # started without a room
            return None
        return participant.identity if participant is not None else None

    # -- the end

    def _on_session_close(self, _: Any) -> None:
        # closing cancels every call still running: the room learns it now, while it can
        for task in self._tasks.values():
            task.status = "cancelled"
            self._publish("ended", task)
        self._tasks.clear()
        self._stop()

    def _stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        for name, listener in self._listeners:
            self._events.off(name, listener)  # type: ignore[arg-type]
        self._session.off("close", self._on_session_close)
        participant = self._room.local_participant
        participant.unregister_rpc_method(RPC_LIST_TASKS)
        participant.unregister_rpc_method(RPC_CANCEL_TASK)
        self._outbox.put_nowait(None)


def publish_tasks(
    session: AgentSession[Any],
    room: rtc.Room,
    *,
    redact: NotGivenOr[Redact | None] = NOT_GIVEN,
    authorize: NotGivenOr[Authorize] = NOT_GIVEN,
    topic: NotGivenOr[str] = NOT_GIVEN,
) -> TaskPublisher:
    """Publish ``session``'s background calls into ``room`` and let the room list and
    cancel them (see the module's docstring and the README for the schema).

    Call it once per session and room, after ``session.start(...)``; it stops when the
    session closes.

    Args:
        session: The session whose calls are published.
        room: The room (``ctx.room``); its local participant gets the RPC methods.
        redact: What of a call's arguments and result to publish (default: nothing).
        authorize: Who may list and cancel (default: :func:`default_authorize`).
        topic: The text-stream topic (default :data:`TASKS_TOPIC`).

    Example::

        def redact(function_name: str, field: str, value: Any) -> Any:
            if function_name == "book_flight" and field == "result":
                return {"booking_reference": value["booking_reference"]}
            return None

        publish_tasks(session, ctx.room, redact=redact)
    """
    return TaskPublisher(
        session,
        room,
        redact=redact if is_given(redact) else None,
        authorize=authorize if is_given(authorize) else default_authorize,
        topic=topic if is_given(topic) else TASKS_TOPIC,
    )


def _payload(data: rtc.RpcInvocationData, fields: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object, with ``v`` checked and ``fields`` present as strings."""
    try:
        payload = json.loads(data.payload) if data.payload else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise rtc.RpcError(MALFORMED, 'the payload must be a JSON object such as {"v": 1}')
    if payload.get("v") != SCHEMA_VERSION:
        raise rtc.RpcError(
            UNSUPPORTED_VERSION,
            f"unsupported version {payload.get('v')!r}: this agent speaks v{SCHEMA_VERSION}",
        )
    for name in fields:
        if not isinstance(payload.get(name), str) or not payload[name]:
            raise rtc.RpcError(MALFORMED, f"the payload needs a non-empty string {name!r}")
    return payload


def _parsed(arguments: str) -> Any:
    """The model's arguments as JSON values (the text itself if it is not JSON)."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _call_id_of(update_id: str) -> str:
    """``call_1`` of ``call_1_update_2``, ``call_1_finished``, ``call_1_cancelled``..."""
    for marker in ("_update_", "_finished", "_cancelled", "_timed_out"):
        if marker in update_id:
            return update_id.rsplit(marker, 1)[0]
    return update_id
