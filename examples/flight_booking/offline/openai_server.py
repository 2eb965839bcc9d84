"""A local server that speaks the OpenAI protocols livekit-plugins-openai uses.

Implemented: streaming chat completions with tool calls (``POST /v1/chat/completions``,
server-sent events, usage chunk); text to speech (``POST /v1/audio/speech``: raw 24 kHz
mono PCM of :func:`~agent_voice.tone`, or base64 deltas as server-sent events when
``stream_format="sse"``); speech to text (``POST /v1/audio/transcriptions``: a multipart
WAV upload, answered ``json`` or ``verbose_json``, recognised by
:class:`~known_speech.KnownSpeech`); the model list (``GET /v1/models``); the Realtime
API websocket (``GET /v1/realtime``), served by :class:`~realtime_server.RealtimeServer`
(``server.realtime``); and, on a second, TLS port of the same app, the Gemini Live API
websocket, served by :class:`~gemini_server.GeminiLiveServer` (``server.gemini``,
``server.gemini_base_url``). Everything answers from one :class:`Scenario`, records
every request, binds to 127.0.0.1 only, and refuses what it does not understand with
the error body OpenAI sends (``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

import base64
import json
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent_voice import tone
from aiohttp import web
from gemini_server import GeminiLiveServer, LocalCertificate
from known_speech import KnownSpeech
from realtime_server import RealtimeServer

Message = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """What the model answers: text, tool calls (name, arguments), or both."""

    text: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass(frozen=True)
class Rule:
    """When the model is sent this, it answers that.

    Attributes:
        name: For logs and for failures of the scenario.
        when: A predicate over the request's messages.
        answer: The answer, or a function of the messages that builds it.
    """

    name: str
    when: Callable[[list[Message]], bool]
    answer: Answer | Callable[[list[Message]], Answer]


@dataclass
class Scenario:
    """Ordered rules; the first that matches answers. No match is a scenario error.

    Attributes:
        rules: The model's part.
        seconds_per_char: How long the text-to-speech audio of one character lasts.
        speech: What the transcription endpoint recognises.
    """

    rules: list[Rule]
    seconds_per_char: float = 0.02
    speech: KnownSpeech = field(default_factory=KnownSpeech)

    def answer(self, messages: list[Message]) -> tuple[str, Answer]:
        for rule in self.rules:
            if rule.when(messages):
                answer = rule.answer(messages) if callable(rule.answer) else rule.answer
                return rule.name, answer
        raise LookupError("no rule of the scenario matches this request")


@dataclass
class Recorded:
    """One request the server received."""

    at: float
    path: str
    body: dict[str, Any]
    rule: str | None = None


@dataclass
class LocalOpenAIServer:
    """The server; use as ``async with LocalOpenAIServer(scenario) as server``.

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1``, for the plugin's ``base_url``.
        requests: Every request received, in order.
        realtime: The realtime websocket endpoint and its scripted user (once entered).
        gemini: The Gemini Live API endpoint and its scripted user (once entered).
        gemini_base_url: ``https://127.0.0.1:<port>``, the same app over TLS, for
            livekit-plugins-google's ``http_options.base_url`` (google-genai only speaks
            ``wss://``); the client trusts ``certificate.ca_file``.
    """

    scenario: Scenario
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""
    realtime: RealtimeServer = field(init=False, repr=False)
    gemini: GeminiLiveServer = field(init=False, repr=False)
    gemini_base_url: str = ""
    certificate: LocalCertificate = field(init=False, repr=False)
    _runner: web.AppRunner | None = None
    _ids: int = 0

    async def __aenter__(self) -> LocalOpenAIServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_get("/v1/models", self._models)
        self.realtime = RealtimeServer(self.scenario)
        self.realtime.mount(app)
        self.gemini = GeminiLiveServer(self.scenario)
        self.gemini.mount(app)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.certificate = LocalCertificate()
        tls = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.certificate.server_context)
        await tls.start()
        self.gemini_base_url = f"https://127.0.0.1:{self._runner.addresses[1][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self.certificate.cleanup()

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_{self._ids}"

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        record = Recorded(at=time.time(), path=request.path, body=body)
        self.requests.append(record)
        messages = body.get("messages")
        if not isinstance(messages, list) or not body.get("model"):
            return _error(400, "you must provide a model and messages", "messages")
        if not body.get("stream"):
            return _error(400, "this local server only streams chat completions", "stream")
        try:
            record.rule, answer = self.scenario.answer(messages)
        except LookupError as e:
            return _error(400, str(e), "messages")

        completion_id = self._next_id("chatcmpl")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "x-request-id": self._next_id("req")}
        )
        await response.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        for i in range(0, len(answer.text), 12):
            await send({"content": answer.text[i : i + 12]})
        for index, (name, arguments) in enumerate(answer.tool_calls):
            call = {
                "index": index,
                "id": self._next_id("call"),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            await send({"tool_calls": [call]})
        await send({}, finish="tool_calls" if answer.tool_calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
            await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        self.requests.append(Recorded(at=time.time(), path=request.path, body=body))
        text = body.get("input")
        if not isinstance(text, str) or not text:
            return _error(400, "input is required", "input")
        pcm = tone(int(len(text) * self.scenario.seconds_per_char * 24000), 24000)
        if body.get("stream_format") == "sse":
            # newer TTS models stream base64 audio deltas as server-sent events
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "x-request-id": self._next_id("req")}
            )
            await response.prepare(request)
            for i in range(0, len(pcm), 9600):
                delta = base64.b64encode(pcm[i : i + 9600]).decode()
                event = {"type": "speech.audio.delta", "audio": delta}
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            done = {"type": "speech.audio.done", "usage": {"input_tokens": len(text)}}
            await response.write(f"data: {json.dumps(done)}\n\n".encode())
        else:
            response = web.StreamResponse(
                headers={"Content-Type": "audio/pcm", "x-request-id": self._next_id("req")}
            )
            await response.prepare(request)
            await response.write(pcm)
        await response.write_eof()
        return response

    async def _transcriptions(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except ValueError:
            form = None
        upload = form.get("file") if form is not None else None
        fields = {k: v for k, v in form.items() if isinstance(v, str)} if form else {}
        record = Recorded(at=time.time(), path=request.path, body=fields)
        self.requests.append(record)
        if not isinstance(upload, web.FileField):
            return _error(400, "you must provide a file", "file")
        if not fields.get("model"):
            return _error(400, "you must provide a model parameter", "model")
        try:
            with wave.open(upload.file, "rb") as wav:
                if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                    raise wave.Error("not 16-bit mono")
                rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
        except (wave.Error, EOFError) as e:
            return _error(400, f"Invalid file format: {e}", "file")
        text = self.scenario.speech.transcribe(pcm, rate)
        record.body["transcript"] = text
        duration = len(pcm) / 2 / rate
        if fields.get("response_format") == "verbose_json":
            return web.json_response(
                {"task": "transcribe", "language": "english", "duration": duration, "text": text}
            )
        return web.json_response(
            {"text": text, "usage": {"type": "duration", "seconds": round(duration)}}
        )

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(at=time.time(), path=request.path, body={}))
        models = ["gpt-4.1", "gpt-4o-mini-tts", "gpt-4o-transcribe", "gpt-realtime"]
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "local"} for m in models
                ],
            }
        )

    async def _unknown(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(at=time.time(), path=request.path, body={}))
        return _error(404, f"Invalid URL ({request.method} {request.path})", None)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(status: int, message: str, param: str | None) -> web.Response:
    return web.json_response(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": None,
            }
        },
        status=status,
    )
