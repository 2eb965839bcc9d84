"""The Gemini Live API (``BidiGenerateContent``) on a local websocket, as livekit-plugins-google
uses it through the google-genai client.

:class:`GeminiLiveServer` is mounted on :class:`~openai_server.LocalOpenAIServer`'s app at
``/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent``, served
over TLS (``server.gemini_base_url``): google-genai always connects with ``wss://``, so the
server makes a certificate for 127.0.0.1 and the client trusts it through ``SSL_CERT_FILE``
(:attr:`LocalCertificate.ca_file`). The model's part comes from the same
:class:`~openai_server.Scenario` as the OpenAI servers: the conversation is turned into
chat-completions ``messages``, and the client's turn that asks for a reply (the
instructions of ``generate_reply`` followed by its ``"."`` placeholder) becomes the last,
system message. The user's speech is scripted on the server (:meth:`user_says`), as the
service's activity detection and input transcription report it.

Client messages (camelCase or snake_case field names, as the service's JSON parser takes):
``setup`` (first and once) -> ``setupComplete``; ``clientContent`` (``turns``,
``turnComplete``: a reply); ``realtimeInput`` (``audio``, ``video``, ``text``,
``activityStart``/``activityEnd`` when automatic activity detection is off,
``audioStreamEnd``); ``toolResponse`` (``functionResponses`` with ``id``, ``name``,
``response``, ``scheduling``, ``willContinue``). Server messages: ``serverContent``
(``modelTurn`` parts with ``inlineData`` audio or ``text``, ``inputTranscription``,
``outputTranscription``, ``interrupted``, ``generationComplete``, ``turnComplete``),
``toolCall``, ``toolCallCancellation`` (a pending call when the user cuts in) and
``usageMetadata``. Malformed or unexpected messages close the socket as the service does:
1007 with the parser's reason, 1008 for a model the API does not serve.

A response to a call id this server never issued, or to a call already answered (and not
kept open with ``willContinue``), is dropped: not added to the model's context and never
answered, with no error, and recorded in :attr:`GeminiLiveServer.dropped_responses`. The
service does not document an error for it, and livekit-plugins-google notes that Gemini
silently drops a response it cannot match to a call (one without an id).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web
from gemini_protocol import PATH, ClientMessage, Closed, Connection, Turn
from gemini_session import LiveSession
from gemini_tls import LocalCertificate

if TYPE_CHECKING:
    from openai_server import Message, Scenario

__all__ = ["ClientMessage", "Closed", "Connection", "GeminiLiveServer", "LocalCertificate", "Turn"]


class GeminiLiveServer:
    """The Live API endpoint and the scripted user.

    Args:
        scenario: Answers the model's part.
        pace: How many times faster than real time audio is generated.
        latency: Seconds a model turn takes before its first output (the service's time to
            first audio, during which the turn can be cut off but nothing of it reached the
            client yet); settable on a running server.

    Attributes:
        messages: Every client message, on every connection, in order.
        connections: Every websocket opened.
        turns: Every model turn, in order.
        dropped_responses: Function responses dropped (unknown or answered call ids).
    """

    def __init__(self, scenario: Scenario, *, pace: float = 2.0, latency: float = 0.0) -> None:
        self.scenario = scenario
        self.pace = pace
        self.latency = latency
        self.messages: list[ClientMessage] = []
        self.connections: list[Connection] = []
        self.turns: list[Turn] = []
        self.dropped_responses: list[dict[str, Any]] = []
        self._sessions: list[LiveSession] = []
        self._ready = asyncio.Event()

    def mount(self, app: web.Application) -> None:
        """Serve the Live API websocket on ``app``; close open sockets when it shuts down."""
        app.router.add_get(PATH, self._handle)
        app.on_shutdown.append(self._on_shutdown)

    def received(self, kind: str) -> list[dict[str, Any]]:
        """The client messages of ``kind`` (``toolResponse``...), their bodies, in order."""
        return [m.payload[kind] for m in self.messages if m.kind == kind]

    @property
    def conversation(self) -> list[Message]:
        """The newest session's conversation, as the scenario sees it."""
        return self._sessions[-1].chat_messages() if self._sessions else []

    @property
    def generating(self) -> bool:
        return bool(self._sessions) and self._sessions[-1].active is not None

    @property
    def user_speaking(self) -> bool:
        return bool(self._sessions) and self._sessions[-1].user_speaking

    async def user_says(self, text: str, *, duration: float = 0.3) -> None:
        """The user says ``text``: a turn in progress is ``interrupted`` at once, and after
        ``duration`` s the input transcription comes, then the model's answer."""
        try:
            await asyncio.wait_for(self._ready.wait(), 5)
        except asyncio.TimeoutError:
            raise RuntimeError("no Live API client connected and set up") from None
        await self._sessions[-1].user_says(text, duration)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        if version not in ("v1", "v1alpha", "v1beta"):
            raise web.HTTPNotFound()
        if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
            return web.json_response(
                {
                    "error": {
                        "code": 403,
                        "message": "Method doesn't allow unregistered callers.",
                        "status": "PERMISSION_DENIED",
                    }
                },
                status=403,
            )
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = Connection(time.time(), version, request.host, str(request.remote))
        self.connections.append(conn)
        session = LiveSession(self, ws, conn)
        self._sessions.append(session)
        try:
            await session.run()
        except Closed as e:
            await ws.close(code=e.code, message=e.reason.encode()[:123])
        finally:
            await session.stop()
        return ws

    async def _on_shutdown(self, app: web.Application) -> None:
        for session in self._sessions:
            await session.stop()
            await session.ws.close(code=WSCloseCode.GOING_AWAY)
