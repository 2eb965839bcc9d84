"""xAI's realtime API (Grok Voice) on a local websocket, as livekit-plugins-xai uses it.

xAI speaks the OpenAI Realtime protocol, so this module is the local realtime server
(:mod:`realtime_server`) with xAI's differences, as livekit-plugins-xai's client code
expects them. :class:`LocalXaiServer` serves ``GET /v1/realtime?model=...`` on a port of
its own (the plugin's ``base_url``: ``ws://127.0.0.1:<port>/v1/realtime``, as xAI's is
``wss://api.x.ai/v1/realtime``), answering from the same
:class:`~openai_server.Scenario` as the other servers.

Where xAI differs from OpenAI (:class:`XaiRealtimeSession`):

- ``session.update`` takes ``voice`` and ``turn_detection`` at the session's top level
  (livekit-plugins-xai 1.6 and later put them there: "xAI expects voice/turn_detection as
  top-level session fields"). OpenAI's nested ``audio.output.voice`` and
  ``audio.input.turn_detection`` are not read: they are recorded in
  :attr:`XaiRealtimeSession.ignored` and xAI's defaults stay (Ara; server VAD, which
  creates and interrupts responses), as for the 1.5 clients. ``session.type`` may be
  left out.
- ``audio.input.transcription`` without a model (``{}``, as the 1.5 clients send) is
  xAI's own transcriber.
- The user's speech is transcribed while it is heard:
  ``conversation.item.input_audio_transcription.updated`` carries a partial transcript
  before ``.completed`` (the partial is read by livekit-plugins-xai 1.6 and later).
- ``conversation.item.deleted`` names no item (``item_id: ""``): every
  livekit-plugins-xai release takes it as the answer to the delete it is waiting for.
- A ``force_message`` item (``say()`` in livekit-plugins-xai 1.6 and later) is spoken
  as it is: a response with no ``response.create`` and no ``client_event_id`` in its
  metadata, whose assistant message is the item's text. A malformed one, or one sent while a
  response is active, gets the ``error`` event the local server sends for such events.
- Per-response ``tool_choice`` is not taken (the plugin marks it unsupported and sends
  none): a ``response.create`` that sets it gets an ``unsupported_value`` error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from openai_server import Answer
from realtime_protocol import ClientError, Event, missing
from realtime_server import RealtimeServer
from realtime_session import RealtimeSession

if TYPE_CHECKING:
    from openai_server import Scenario

FORCE_MESSAGE_RULE = "force_message"
"""The ``rule`` recorded for a response that speaks a ``force_message`` item."""

_DEFAULT_VOICE = "Ara"


class XaiRealtimeSession(RealtimeSession):
    """One xAI websocket: the local realtime session, with xAI's differences.

    Attributes:
        ignored: The OpenAI-only session fields the client sent (``audio.output.voice``,
            ``audio.input.turn_detection``), which xAI does not read, in order.
        voice: The session's voice.
    """

    def __init__(self, server: RealtimeServer, ws: web.WebSocketResponse, *, model: str) -> None:
        super().__init__(server, ws, model=model)
        self.ignored: list[str] = []
        self.voice = _DEFAULT_VOICE
        self.config["audio"]["output"]["voice"] = self.voice
        self.config["audio"]["input"]["transcription"] = {"model": "grok-transcribe"}

    async def on_session_update(self, event: Event) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            raise missing("session")
        update = {"type": "realtime", **update}
        audio = {
            k: dict(v) if isinstance(v, dict) else v for k, v in (update.get("audio") or {}).items()
        }
        for direction, name in (("output", "voice"), ("input", "turn_detection")):
            if isinstance(audio.get(direction), dict) and name in audio[direction]:
                audio[direction].pop(name)
                self.ignored.append(f"audio.{direction}.{name}")
        if "voice" in update:
            voice = update.pop("voice")
            if not isinstance(voice, str) or not voice:
                raise ClientError("Invalid value for 'session.voice'.", param="session.voice")
            self.voice = voice
            audio.setdefault("output", {})["voice"] = voice
        if "turn_detection" in update:
            audio.setdefault("input", {})["turn_detection"] = update.pop("turn_detection")
        if isinstance(audio.get("input"), dict) and audio["input"].get("transcription") == {}:
            # no model named: xAI's own transcriber (livekit-plugins-xai 1.5 sends {})
            audio["input"]["transcription"] = {"model": "grok-transcribe"}
        if audio:
            update["audio"] = audio
        await super().on_session_update({**event, "session": update})

    async def on_item_create(self, event: Event) -> None:
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "force_message":
            await self.on_force_message(event, item)
        else:
            await super().on_item_create(event)

    async def on_force_message(self, event: Event, item: dict[str, Any]) -> None:
        """Speak a ``force_message`` item's text, as a response of its own."""
        parts = item.get("content")
        if not isinstance(parts, list) or not parts:
            raise missing("item.content")
        text = "".join(
            p.get("text") or ""
            for p in parts
            if isinstance(p, dict) and p.get("type") == "output_text"
        )
        if not text:
            raise missing("item.content[0].text")
        if self.active is not None:
            raise ClientError(
                "Conversation already has an active response in progress: "
                f"{self.active.record.id}.",
                code="conversation_already_has_active_response",
            )
        self.responses.start({}, event_id=None, answer=(FORCE_MESSAGE_RULE, Answer(text=text)))

    async def on_item_delete(self, event: Event) -> None:
        item_id = event.get("item_id")
        item = self.conversation.existing(item_id, "delete")
        self.items.remove(item)
        await self.send("conversation.item.deleted", item_id="")

    async def on_response_create(self, event: Event) -> None:
        params = event.get("response")
        if isinstance(params, dict) and "tool_choice" in params:
            raise ClientError(
                "'response.tool_choice' is not supported.",
                code="unsupported_value",
                param="response.tool_choice",
            )
        await super().on_response_create(event)

    async def commit_user_item(self, item_id: str, *, transcript: str | None) -> None:
        if transcript and self.config["audio"]["input"].get("transcription"):
            words = transcript.split()
            await self.send(
                "conversation.item.input_audio_transcription.updated",
                item_id=item_id,
                content_index=0,
                transcript=" ".join(words[: max(1, len(words) // 2)]),
            )
        await super().commit_user_item(item_id, transcript=transcript)


class XaiRealtimeServer(RealtimeServer):
    """The xAI realtime endpoint and its scripted user (see :class:`RealtimeServer`)."""

    session_class = XaiRealtimeSession

    @property
    def ignored(self) -> list[str]:
        """The OpenAI-only session fields xAI did not read, on every connection."""
        return [
            name for s in self._sessions if isinstance(s, XaiRealtimeSession) for name in s.ignored
        ]

    @property
    def voice(self) -> str | None:
        """The newest session's voice."""
        session = self._sessions[-1] if self._sessions else None
        return session.voice if isinstance(session, XaiRealtimeSession) else None


@dataclass
class LocalXaiServer:
    """xAI's realtime endpoint on 127.0.0.1; use as ``async with LocalXaiServer(scenario)``.

    Attributes:
        base_url: ``ws://127.0.0.1:<port>/v1/realtime``, for the plugin's ``base_url``.
        realtime: The endpoint and its scripted user (once entered).
        requests: The path of every other request, answered 404 as xAI does.
    """

    scenario: Scenario
    base_url: str = ""
    realtime: XaiRealtimeServer = field(init=False, repr=False)
    requests: list[tuple[float, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> LocalXaiServer:
        app = web.Application()
        self.realtime = XaiRealtimeServer(self.scenario)
        self.realtime.mount(app)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"ws://127.0.0.1:{self._runner.addresses[0][1]}/v1/realtime"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _unknown(self, request: web.Request) -> web.Response:
        self.requests.append((time.time(), request.path))
        return web.json_response(
            {"code": "Not found", "error": f"No handler found for {request.path}."}, status=404
        )
