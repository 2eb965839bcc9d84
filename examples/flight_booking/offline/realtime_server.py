"""The OpenAI Realtime API (GA protocol) on a local websocket, as livekit-plugins-openai uses it.

:class:`RealtimeServer` is mounted on :class:`~openai_server.LocalOpenAIServer`'s app at
``GET /v1/realtime?model=...``, where the plugin's ``process_base_url`` sends a
``base_url`` of ``http://127.0.0.1:<port>/v1``. Each websocket is one realtime session
with its own conversation (:class:`~realtime_session.RealtimeSession`). The model's part
comes from the same :class:`~openai_server.Scenario` as the chat completions: the
conversation is turned into chat-completions ``messages`` (session instructions first, a
response's ``instructions`` last, as a system message) and answered with
``scenario.answer(messages)`` (:mod:`realtime_responses`).

The user's turns arrive as OpenAI's server-side turn detection reports them, from either
side: heard in the audio the client appends (``input_audio_buffer.append``, as a
LiveKit room's microphone track is streamed; :mod:`server_vad` finds the turns and the
scenario's :class:`~known_speech.KnownSpeech` transcribes them), or scripted on the
server (:meth:`RealtimeServer.user_says`). Every client event is recorded, with whether
a response was in progress and whether the user was speaking when it arrived.

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
import time
from typing import TYPE_CHECKING

from aiohttp import web
from realtime_protocol import (
    ClientError,
    ClientEvent,
    Connection,
    Event,
    Item,
    ResponseRecord,
    http_error,
    public,
)
from realtime_session import RealtimeSession

if TYPE_CHECKING:
    from openai_server import Scenario

__all__ = [
    "ClientError",
    "ClientEvent",
    "Connection",
    "RealtimeServer",
    "RealtimeSession",
    "ResponseRecord",
]


class RealtimeServer:
    """The realtime websocket endpoint, and the user's turns (scripted, or heard).

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

    session_class: type[RealtimeSession] = RealtimeSession
    """What serves one websocket; a provider that differs from OpenAI subclasses it."""

    def __init__(self, scenario: Scenario, *, pace: float = 2.0) -> None:
        if pace <= 0:
            raise ValueError("pace must be positive")
        self.scenario = scenario
        self.pace = pace
        self.events: list[ClientEvent] = []
        self.connections: list[Connection] = []
        self.responses: list[ResponseRecord] = []
        self._sessions: list[RealtimeSession] = []
        self._connected = asyncio.Event()
        self._open: dict[RealtimeSession, web.Request] = {}

    def mount(self, app: web.Application) -> None:
        """Serve ``GET /v1/realtime`` on ``app``; close open sockets when it shuts down."""
        app.router.add_get("/v1/realtime", self._handle)
        app.on_shutdown.append(self._on_shutdown)

    @property
    def conversation(self) -> list[Item]:
        """The items of the newest session's conversation, in order."""
        return [public(i) for i in self._sessions[-1].items] if self._sessions else []

    @property
    def response_active(self) -> bool:
        """Whether the newest session is generating a response."""
        return bool(self._sessions) and self._sessions[-1].active is not None

    @property
    def user_speaking(self) -> bool:
        """Whether the user is speaking (between speech started and stopped), scripted or
        heard in the input audio."""
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

    async def drop_connections(self, *, code: int | None = None) -> int:
        """Drop every open websocket, as a network failure or a server restart does.

        Args:
            code: None closes the TCP connection at once, with no close frame (a network
                drop); a close code (1011 is an internal server error) sends that close
                frame first.

        Returns:
            How many websockets were dropped. Each one's response in progress, if any,
            stops where it was (recorded as ``failed``, ``connection_lost``: the client
            gets no ``response.done``); the client may then connect again.
        """
        dropped = list(self._open.items())
        for session, request in dropped:
            if session.active is not None:
                session.active.record.status = "failed"
                session.active.record.reason = "connection_lost"
            if code is None:
                if request.transport is not None:
                    request.transport.abort()
            else:
                await session.ws.close(code=code, message=b"internal server error")
        for session, _ in dropped:
            await session.close()
        return len(dropped)

    async def _current_session(self, timeout: float = 5.0) -> RealtimeSession:
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
            return http_error(401, "You didn't provide an API key.", "invalid_api_key")
        if not model:
            return http_error(400, "Missing required parameter: 'model'.", None)
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
        session = self.session_class(self, ws, model=model)
        self._sessions.append(session)
        self._open[session] = request
        self._connected.set()
        try:
            await session.run()
        finally:
            self._open.pop(session, None)
            await session.close()
        return ws

    async def _on_shutdown(self, app: web.Application) -> None:
        for session in self._sessions:
            await session.close()
            await session.ws.close()
