"""One websocket of the local Gemini Live server: the setup, the conversation, model turns.

The client's messages are handled as the Live API handles them (see :mod:`gemini_server`
for the list): the model's turns are answered by the scenario and streamed as audio (or
text) with their transcription; tool calls are issued with ids the server remembers, and
function responses are matched to them (blocking calls end the turn until answered;
non-blocking ones are scheduled as their ``scheduling`` says: ``INTERRUPT`` cuts the turn
under way, voiced or not yet, and starts one for the response at once; ``WHEN_IDLE``, the
default, waits for that turn to end; ``SILENT`` starts none).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from gemini_protocol import (
    CHUNK_SECONDS,
    INSTRUCTIONS,
    OUTPUT_RATE,
    SCHEDULING,
    ClientMessage,
    Closed,
    Connection,
    Turn,
    camel,
    check_fields,
    content_text,
    response_output,
    usage,
)

if TYPE_CHECKING:
    from gemini_server import GeminiLiveServer
    from openai_server import Message


class LiveSession:
    """One websocket: its setup, its conversation (as chat messages) and its model turns."""

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
            body = camel(body)
            kinds = check_fields(body, "")
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
            check_fields(value, kind)
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
            and content_text(turns[-1]) == "."
            and (turns[-1].get("role") == "user")
        )
        for i, turn in enumerate(turns):
            text, role = content_text(turn), turn.get("role")
            if role not in (None, "user", "model", "system"):
                raise Closed(f"Invalid value at 'client_content.turns[{i}].role'.")
            if placeholder and i == len(turns) - 1:
                continue
            if role == "user" and (found := INSTRUCTIONS.match(text)):
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
            if scheduling not in SCHEDULING:
                raise Closed(
                    f"Invalid value at 'tool_response.function_responses[{i}].scheduling', "
                    f'"{scheduling}"'
                )
            call = self.issued.get(fr.get("id") or "")
            if call is None or not call["open"]:
                self.server.dropped_responses.append(fr)
                continue
            call["open"] = bool(fr.get("willContinue")) and not call["blocking"]
            self.history.append(
                {"role": "tool", "tool_call_id": fr["id"], "content": response_output(fr)}
            )
            if call["blocking"]:
                reply = True
            elif scheduling == "INTERRUPT":
                interrupt = True
            elif scheduling != "SILENT":
                self._idle_replies += 1
        if reply and not any(c["open"] and c["blocking"] for c in self.issued.values()):
            self.start("tool_response")  # every blocking call of the turn is answered
        elif interrupt:
            # cut the turn under way, voiced or not, and answer at once: that turn covers
            # the responses still waiting for the model to be idle, too
            await self.interrupt()
            self._idle_replies = 0
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
        head = [{"role": "system", "content": content_text(system)}] if content_text(system) else []
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
            if self.server.latency:
                # the model's time to first output: the turn is under way, nothing sent yet
                try:
                    await asyncio.wait_for(self._cut.wait(), self.server.latency)
                except asyncio.TimeoutError:
                    pass
            if answer.text and not self._cut.is_set():
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
                {"serverContent": {"turnComplete": True}, "usageMetadata": usage(messages, turn)}
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
