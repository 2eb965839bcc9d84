"""One websocket of the local realtime server: a session, its conversation, the user's turns.

The client's events are handled as OpenAI handles them (see :mod:`realtime_server` for
the list), the conversation is kept in order (``previous_item_id``), and the user's turns
come either from the audio the client appends, heard by :class:`~server_vad.ServerVad`
and transcribed by the scenario's :class:`~known_speech.KnownSpeech`, or from a script
(:meth:`RealtimeSession.user_says`), as OpenAI's server-side turn detection reports them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from realtime_protocol import (
    SAMPLE_RATE,
    ClientError,
    ClientEvent,
    Conversation,
    Event,
    Item,
    chat_messages,
    missing,
    new_id,
    public,
    session_config,
    validated_item,
)
from realtime_responses import Response, Responses
from server_vad import ServerVad, SpeechStarted

if TYPE_CHECKING:
    from openai_server import Message
    from realtime_server import RealtimeServer


class RealtimeSession:
    """One websocket: the session's configuration, its conversation and its responses.

    Attributes:
        server: The endpoint it belongs to (its scenario and records).
        conversation: The conversation.
        items: Its items, in order.
        config: The session's configuration, as ``session.updated`` reports it.
        responses: The model's side.
        user_speaking: Whether the user is speaking (scripted, or heard in the audio).
    """

    def __init__(self, server: RealtimeServer, ws: web.WebSocketResponse, *, model: str) -> None:
        self.server = server
        self.ws = ws
        self.id = new_id("sess_")
        self.conversation_id = new_id("conv_")
        self.conversation = Conversation()
        self.items = self.conversation.items
        self.responses = Responses(self)
        self.user_speaking = False
        self.configured = asyncio.Event()
        self.config: dict[str, Any] = session_config(self.id, model)
        self.send_lock = asyncio.Lock()
        self._input_audio = bytearray()
        self._input_ms = 0  # input audio received since the session began, for VAD offsets
        self._vad: ServerVad | None = None
        self._turn_item: str | None = None  # the user's item while they speak

    @property
    def active(self) -> Response | None:
        """The response in progress, if any."""
        return self.responses.active

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
                    response_active=self.responses.active is not None,
                    user_speaking=self.user_speaking,
                )
            )
            try:
                await self.dispatch(event)
            except ClientError as e:
                await self.send_error(e, event.get("event_id"))

    async def close(self) -> None:
        await self.responses.close()

    async def send(self, event_type: str, **fields: Any) -> None:
        async with self.send_lock:
            await self.send_locked(event_type, **fields)

    async def send_locked(self, event_type: str, **fields: Any) -> None:
        if self.ws.closed:
            return
        event = {"type": event_type, "event_id": new_id("event_"), **fields}
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
            raise missing("session")
        if update.get("type") != "realtime":
            raise missing("session.type")
        for key, value in update.items():
            if key == "audio" and isinstance(value, dict):
                audio = self.config["audio"]
                for direction in ("input", "output"):
                    if isinstance(value.get(direction), dict):
                        # nested settings (turn_detection, transcription) are replaced whole
                        audio[direction].update(value[direction])
            elif key not in ("id", "object"):
                self.config[key] = value
        turn_detection = self.config["audio"]["input"].get("turn_detection")
        if not turn_detection:
            self._vad = None
        elif self._vad is None or self._vad.turn_detection != turn_detection:
            self._vad = ServerVad(
                sample_rate=SAMPLE_RATE, turn_detection=turn_detection, start_ms=self._input_ms
            )
        self.configured.set()
        await self.send("session.updated", session=self.config)

    async def on_item_create(self, event: Event) -> None:
        item = validated_item(event.get("item"))
        item_id = item.setdefault("id", new_id("item_"))
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
        previous = self.conversation.insert(item, event.get("previous_item_id"))
        await self.send("conversation.item.added", previous_item_id=previous, item=item)
        await self.send("conversation.item.done", previous_item_id=previous, item=item)

    async def on_item_delete(self, event: Event) -> None:
        item_id = event.get("item_id")
        item = self.conversation.existing(item_id, "delete")
        self.items.remove(item)
        await self.send("conversation.item.deleted", item_id=item_id)

    async def on_item_truncate(self, event: Event) -> None:
        item_id = event.get("item_id")
        item = self.conversation.existing(item_id, "truncate")
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
        item = self.conversation.existing(event.get("item_id"), "retrieve")
        await self.send("conversation.item.retrieved", item=public(item))

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
        self.responses.start(params, event_id=event.get("event_id"))

    async def on_response_cancel(self, event: Event) -> None:
        response_id = event.get("response_id")
        if self.active is None or (response_id and response_id != self.active.record.id):
            raise ClientError(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
            )
        await self.responses.cancel_active("client_cancelled")

    async def on_audio_append(self, event: Event) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise missing("audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except ValueError:
            raise ClientError(
                "Invalid 'audio'. Expected base64-encoded audio.", param="audio"
            ) from None
        self._input_audio += pcm
        self._input_ms += len(pcm) * 1000 // (2 * SAMPLE_RATE)
        for detected in self._vad.push(pcm) if self._vad is not None else []:
            if isinstance(detected, SpeechStarted):
                await self.speech_started(detected.audio_start_ms)
            else:
                self._input_audio.clear()  # the turn's audio is committed
                transcript = self.server.scenario.speech.transcribe(detected.pcm, SAMPLE_RATE)
                await self.speech_stopped(detected.audio_end_ms, transcript=transcript)

    async def on_audio_commit(self, event: Event) -> None:
        buffered_ms = len(self._input_audio) * 1000 / (2 * SAMPLE_RATE)
        if buffered_ms < 100:
            raise ClientError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        transcript = self.server.scenario.speech.transcribe(bytes(self._input_audio), SAMPLE_RATE)
        self._input_audio.clear()
        await self.commit_user_item(new_id("item_"), transcript=transcript or None)

    async def on_audio_clear(self, event: Event) -> None:
        self._input_audio.clear()
        if self._vad is not None:
            self._vad.clear()
            self.user_speaking, self._turn_item = False, None
        await self.send("input_audio_buffer.cleared")

    # -- conversation ------------------------------------------------------------------

    async def commit_user_item(self, item_id: str, *, transcript: str | None) -> None:
        item: Item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = self.conversation.insert(item, None)
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
        return chat_messages(self.config.get("instructions"), self.items, response_instructions)

    # -- the user's turns (server-side VAD) --------------------------------------------

    async def user_says(self, text: str, *, duration: float) -> None:
        """The user says ``text`` for ``duration`` seconds, as if heard in the audio."""
        if not self.config["audio"]["input"].get("turn_detection"):
            raise RuntimeError("the session has no turn detection: OpenAI reports no speech")
        await self.speech_started(self._input_ms)
        try:
            await asyncio.sleep(duration)
            self._input_ms += int(duration * 1000)
        finally:
            self.user_speaking = False
        await self.speech_stopped(self._input_ms, transcript=text)

    async def speech_started(self, audio_start_ms: int) -> None:
        """The user started speaking: say so, and stop the response in progress when the
        session's turn detection has ``interrupt_response``."""
        turn_detection = self.config["audio"]["input"].get("turn_detection") or {}
        self._turn_item = item_id = new_id("item_")
        self.user_speaking = True
        await self.send(
            "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id
        )
        if turn_detection.get("interrupt_response", True) and self.active is not None:
            await self.responses.cancel_active("turn_detected")

    async def speech_stopped(self, audio_end_ms: int, *, transcript: str) -> None:
        """The user stopped speaking: commit their item, then start the response when
        the session's turn detection has ``create_response``."""
        turn_detection = self.config["audio"]["input"].get("turn_detection") or {}
        item_id, self._turn_item = self._turn_item or new_id("item_"), None
        self.user_speaking = False
        await self.send(
            "input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id
        )
        await self.commit_user_item(item_id, transcript=transcript)
        if turn_detection.get("create_response", True) and self.active is None:
            self.responses.start({}, event_id=None)
