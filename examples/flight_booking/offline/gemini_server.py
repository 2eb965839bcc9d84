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
import base64
import datetime
import ipaddress
import json
import math
import re
import secrets
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

if TYPE_CHECKING:
    from openai_server import Message, Scenario

PATH = "/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
OUTPUT_RATE = 24000
CHUNK_SECONDS = 0.1
_STRUCTS = {"args", "response", "parametersJsonSchema", "responseJsonSchema"}
_FIELDS = {
    "": {"setup", "clientContent", "realtimeInput", "toolResponse"},
    "clientContent": {"turns", "turnComplete"},
    "toolResponse": {"functionResponses"},
    "realtimeInput": {
        "audio",
        "video",
        "text",
        "activityStart",
        "activityEnd",
        "audioStreamEnd",
        "mediaChunks",
    },
}
_SCHEDULING = {"SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"}
_INSTRUCTIONS = re.compile(r"\A<instructions>\n(.*)\n</instructions>\Z", re.S)


class Closed(Exception):
    """Close the socket with ``code`` and ``reason``, as the service does."""

    def __init__(self, reason: str, code: int = 1007) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class ClientMessage:
    """One message a client sent: its kind (``setup``, ``clientContent``...), the message
    (camelCase), and whether the model was generating or the user speaking then."""

    at: float
    kind: str
    payload: dict[str, Any]
    generating: bool
    user_speaking: bool


@dataclass
class Connection:
    """One websocket: its API version, ``setup.model``, ``Host`` header and peer."""

    at: float
    version: str
    host: str
    peer: str
    model: str = ""


@dataclass
class Turn:
    """One model turn: why it started (``user``, ``client_content``, ``tool_response``),
    what the scenario saw and answered, what was said, the calls made, and ``completed``,
    ``awaiting_tools``, ``interrupted`` or ``failed`` (no rule matched)."""

    trigger: str
    messages: list[Message] = field(default_factory=list)
    rule: str | None = None
    text: str = ""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    status: str = "in_progress"


class LocalCertificate:
    """A self-signed certificate for 127.0.0.1, for the server's TLS site; ``ca_file`` is
    what a client trusts (``SSL_CERT_FILE``)."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.timezone.utc)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder(subject_name=name, issuer_name=name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, False, False, False),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        self._dir = tempfile.TemporaryDirectory(prefix="local-gemini-")
        self.ca_file = str(Path(self._dir.name) / "cert.pem")
        key_file = Path(self._dir.name) / "key.pem"
        Path(self.ca_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_context.load_cert_chain(self.ca_file, key_file)

    def cleanup(self) -> None:
        self._dir.cleanup()


class GeminiLiveServer:
    """The Live API endpoint and the scripted user.

    Args:
        scenario: Answers the model's part.
        pace: How many times faster than real time audio is generated.

    Attributes:
        messages: Every client message, on every connection, in order.
        connections: Every websocket opened.
        turns: Every model turn, in order.
        dropped_responses: Function responses dropped (unknown or answered call ids).
    """

    def __init__(self, scenario: Scenario, *, pace: float = 2.0) -> None:
        self.scenario = scenario
        self.pace = pace
        self.messages: list[ClientMessage] = []
        self.connections: list[Connection] = []
        self.turns: list[Turn] = []
        self.dropped_responses: list[dict[str, Any]] = []
        self._sessions: list[_LiveSession] = []
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
        session = _LiveSession(self, ws, conn)
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


class _LiveSession:
    def __init__(self, server: GeminiLiveServer, ws: web.WebSocketResponse, conn: Connection):
        self.server, self.ws, self.conn = server, ws, conn
        self.setup: dict[str, Any] | None = None
        self.history: list[Message] = []
        self.active: Turn | None = None
        self._task: asyncio.Task[None] | None = None
        self._cut = asyncio.Event()
        self.user_speaking = False
        self.issued: dict[str, dict[str, Any]] = {}  # call id -> {name, blocking, open}
        self._idle_replies = 0  # WHEN_IDLE responses waiting for the turn to end
        self._stopped = False

    # -- transport -----------------------------------------------------------------------

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT and msg.type != WSMsgType.BINARY:
                continue
            try:
                body = json.loads(msg.data)
            except ValueError:
                raise Closed("Invalid JSON payload received. Unexpected token.") from None
            if not isinstance(body, dict):
                raise Closed("Invalid JSON payload received. Expected an object.")
            body = _camel(body)
            kinds = _check_fields(body, "")
            if len(kinds) != 1:
                raise Closed("Request contains an invalid argument.")
            kind = kinds[0]
            self.server.messages.append(
                ClientMessage(time.time(), kind, body, self.active is not None, self.user_speaking)
            )
            if (kind == "setup") != (self.setup is None):
                raise Closed("Request contains an invalid argument.")
            value = body[kind]
            if not isinstance(value, dict):
                raise Closed(f"Invalid value at '{kind}': expected an object.")
            _check_fields(value, kind)
            await getattr(self, f"on_{kind}")(value)

    async def send(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
            try:
                await self.ws.send_str(json.dumps(message))
            except ConnectionError:
                pass  # the client went away

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- client messages -------------------------------------------------------------------

    async def on_setup(self, setup: dict[str, Any]) -> None:
        model = setup.get("model")
        if not isinstance(model, str) or not model.startswith("models/"):
            raise Closed("Request contains an invalid argument.")
        if not any(tag in model for tag in ("live", "native-audio")):
            raise Closed(
                f"{model} is not found for API version {self.conn.version}, or is not "
                "supported for bidiGenerateContent.",
                code=1008,
            )
        self.setup, self.conn.model = setup, model
        for tool in setup.get("tools") or []:
            for decl in tool.get("functionDeclarations") or []:
                if not decl.get("name"):
                    raise Closed("Invalid function declaration: name is required.")
        await self.send({"setupComplete": {}})
        self.server._ready.set()

    async def on_clientContent(self, content: dict[str, Any]) -> None:
        turns = content.get("turns") or []
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise Closed("Invalid value at 'client_content.turns': expected a list of Content.")
        complete = bool(content.get("turnComplete"))
        placeholder = (
            complete
            and bool(turns)
            and _text(turns[-1]) == "."
            and (turns[-1].get("role") == "user")
        )
        for i, turn in enumerate(turns):
            text, role = _text(turn), turn.get("role")
            if role not in (None, "user", "model", "system"):
                raise Closed(f"Invalid value at 'client_content.turns[{i}].role'.")
            if placeholder and i == len(turns) - 1:
                continue
            if role == "user" and (found := _INSTRUCTIONS.match(text)):
                self.history.append({"role": "system", "content": found.group(1)})
            elif role == "model" and not (placeholder and i == len(turns) - 2):
                self.history.append({"role": "assistant", "content": text})
            elif role in ("model", "system", None):
                # the reply's instructions, or an update of the session's instructions
                self.history.append({"role": "system", "content": text})
            elif text:
                self.history.append({"role": "user", "content": text})
        if complete:
            await self.interrupt()
            self.start("client_content")

    async def on_realtimeInput(self, data: dict[str, Any]) -> None:
        manual = (
            ((self.setup or {}).get("realtimeInputConfig") or {}).get("automaticActivityDetection")
            or {}
        ).get("disabled", False)
        for key in ("audio", "video"):
            if key in data:
                blob = data[key]
                if not isinstance(blob, dict) or not blob.get("mimeType"):
                    raise Closed(f"Invalid value at 'realtime_input.{key}.mime_type'.")
                try:
                    base64.b64decode(blob.get("data") or "", validate=True)
                except ValueError:
                    raise Closed(f"Invalid value at 'realtime_input.{key}.data': base64.") from None
        if ("activityStart" in data or "activityEnd" in data) and not manual:
            raise Closed(
                "Explicit activity control is not supported when automatic activity "
                "detection is enabled."
            )
        if "activityStart" in data:
            await self.interrupt()
        if isinstance(data.get("text"), str):
            await self.interrupt()
            self.history.append({"role": "user", "content": data["text"]})
            self.start("user")

    async def on_toolResponse(self, data: dict[str, Any]) -> None:
        responses = data.get("functionResponses")
        if not isinstance(responses, list) or not responses:
            raise Closed("Invalid value at 'tool_response.function_responses'.")
        reply, interrupt = False, False
        for i, fr in enumerate(responses):
            if not isinstance(fr, dict) or not isinstance(fr.get("response", {}), dict):
                raise Closed(f"Invalid value at 'tool_response.function_responses[{i}]'.")
            scheduling = fr.get("scheduling", "WHEN_IDLE")
            if scheduling not in _SCHEDULING:
                raise Closed(
                    f"Invalid value at 'tool_response.function_responses[{i}].scheduling', "
                    f'"{scheduling}"'
                )
            call = self.issued.get(fr.get("id") or "")
            if call is None or not call["open"]:
                self.server.dropped_responses.append(fr)
                continue
            call["open"] = bool(fr.get("willContinue")) and not call["blocking"]
            self.history.append({"role": "tool", "tool_call_id": fr["id"], "content": _output(fr)})
            if call["blocking"]:
                reply = True
            elif scheduling == "INTERRUPT":
                interrupt = True
            elif scheduling != "SILENT":
                self._idle_replies += 1
        if reply and not any(c["open"] and c["blocking"] for c in self.issued.values()):
            self.start("tool_response")  # every blocking call of the turn is answered
        elif interrupt:
            await self.interrupt()
            self.start("tool_response")
        elif self._idle_replies and self.active is None:
            self._idle_replies = 0
            self.start("tool_response")

    # -- the user (automatic activity detection) -----------------------------------------

    async def user_says(self, text: str, duration: float) -> None:
        self.user_speaking = True
        try:
            await self.interrupt()
            await asyncio.sleep(duration)
        finally:
            self.user_speaking = False
        self.history.append({"role": "user", "content": text})
        self.start("user", heard=text)

    # -- model turns ---------------------------------------------------------------------

    def chat_messages(self) -> list[Message]:
        system = (self.setup or {}).get("systemInstruction") or {}
        head = [{"role": "system", "content": _text(system)}] if _text(system) else []
        return head + [dict(m) for m in self.history]

    def start(self, trigger: str, *, heard: str | None = None) -> None:
        turn = Turn(trigger=trigger)
        self.server.turns.append(turn)
        self.active = turn
        self._cut = asyncio.Event()
        self._task = asyncio.create_task(self._generate(turn, heard), name="gemini_live_turn")

    async def interrupt(self) -> None:
        """Cut the turn in progress (``interrupted``) and cancel its unanswered calls."""
        turn, task = self.active, self._task
        if turn is None or task is None:
            return
        self._cut.set()
        await asyncio.wait([task])
        pending = [cid for cid, _ in turn.tool_calls if self.issued[cid]["open"]]
        for cid in pending:
            self.issued[cid]["open"] = False
        if pending:
            await self.send({"toolCallCancellation": {"ids": pending}})

    async def _generate(self, turn: Turn, heard: str | None) -> None:
        config = (self.setup or {}).get("generationConfig") or {}
        audio = "AUDIO" in (config.get("responseModalities") or ["AUDIO"])
        try:
            if heard and (self.setup or {}).get("inputAudioTranscription") is not None:
                await self.send({"serverContent": {"inputTranscription": {"text": heard}}})
            turn.messages = messages = self.chat_messages()
            try:
                turn.rule, answer = self.server.scenario.answer(messages)
            except LookupError:
                turn.status = "failed"
                await self.send({"serverContent": {"turnComplete": True}})
                return
            if answer.text:
                await self._speak(turn, answer.text, audio)
            if self._cut.is_set():
                turn.status = "interrupted"
                await self.send({"serverContent": {"interrupted": True}})
                return
            declared = {
                d["name"]: d.get("behavior") != "NON_BLOCKING"
                for t in (self.setup or {}).get("tools") or []
                for d in t.get("functionDeclarations") or []
            }
            calls = []
            for name, args in answer.tool_calls:
                if name not in declared:
                    turn.status = "failed"  # the scenario called a tool the client did not declare
                    break
                cid = "function-call-" + str(secrets.randbits(60))
                self.issued[cid] = {"name": name, "blocking": declared[name], "open": True}
                calls.append({"id": cid, "name": name, "args": args})
                turn.tool_calls.append((cid, name))
            if answer.text:
                self.history.append({"role": "assistant", "content": turn.text})
            if calls:
                self.history.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": c["id"],
                                "type": "function",
                                "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
                            }
                            for c in calls
                        ],
                    }
                )
                await self.send({"toolCall": {"functionCalls": calls}})
            if any(self.issued[c["id"]]["blocking"] for c in calls):
                turn.status = "awaiting_tools"  # the turn goes on once they are answered
                return
            await self.send({"serverContent": {"generationComplete": True}})
            await self.send(
                {"serverContent": {"turnComplete": True}, "usageMetadata": _usage(messages, turn)}
            )
            if turn.status != "failed":
                turn.status = "completed"
        finally:
            if self.active is turn:
                self.active = None
            if self._idle_replies and not (self._cut.is_set() or self._stopped):
                self._idle_replies = 0
                self.start("tool_response")

    async def _speak(self, turn: Turn, text: str, audio: bool) -> None:
        samples = int(len(text) * self.server.scenario.seconds_per_char * OUTPUT_RATE)
        chunk = int(CHUNK_SECONDS * OUTPUT_RATE)
        steps = max(1, math.ceil(samples / chunk)) if audio else 1
        transcribe = (self.setup or {}).get("outputAudioTranscription") is not None
        for step in range(steps):
            delta = text[len(text) * step // steps : len(text) * (step + 1) // steps]
            turn.text += delta
            if audio:
                pcm = b"\x00\x00" * max(min(chunk, samples - step * chunk), 0)
                data = {
                    "mimeType": f"audio/pcm;rate={OUTPUT_RATE}",
                    "data": base64.b64encode(pcm).decode(),
                }
                await self.send({"serverContent": {"modelTurn": {"parts": [{"inlineData": data}]}}})
                if transcribe:
                    await self.send({"serverContent": {"outputTranscription": {"text": delta}}})
            else:
                await self.send({"serverContent": {"modelTurn": {"parts": [{"text": delta}]}}})
            if step < steps - 1:
                try:
                    await asyncio.wait_for(self._cut.wait(), CHUNK_SECONDS / self.server.pace)
                    return
                except asyncio.TimeoutError:
                    pass


def _camel(value: Any, key: str = "") -> Any:
    """Field names in camelCase (the service takes both); Struct values kept as sent."""
    if key in _STRUCTS:
        return value
    if isinstance(value, list):
        return [_camel(v, key) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            ck = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k)
            out[ck] = _camel(v, ck)
        return out
    return value


def _check_fields(body: dict[str, Any], kind: str) -> list[str]:
    known = _FIELDS.get(kind)
    if known is not None:
        for name in body:
            if name not in known:
                where = f" at '{kind}'" if kind else ""
                raise Closed(
                    f'Invalid JSON payload received. Unknown name "{name}"{where}: '
                    "Cannot find field."
                )
    return list(body)


def _text(content: dict[str, Any]) -> str:
    return "".join(p.get("text") or "" for p in content.get("parts") or [] if isinstance(p, dict))


def _output(response: dict[str, Any]) -> str:
    body = response.get("response") or {}
    value = body.get("output", body.get("error")) if len(body) == 1 else None
    return value if isinstance(value, str) else json.dumps(body)


def _usage(messages: list[Message], turn: Turn) -> dict[str, Any]:
    prompt = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1
    response = len(turn.text) // 2
    return {
        "promptTokenCount": prompt,
        "responseTokenCount": response,
        "totalTokenCount": prompt + response,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": response}],
    }
