"""The model's side of the local realtime server: responses, streamed as OpenAI streams them.

A response reads the conversation as chat-completions ``messages``, asks the scenario
for the answer, and streams it: a message (its transcript in deltas, with the agent's
voice, :func:`~agent_voice.tone`, at the scenario's ``seconds_per_char``, generated
``pace`` times faster than real time) and function calls. It can be cancelled between
two chunks of audio, by the client or by the user's speech.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent_voice import tone
from realtime_protocol import (
    CHUNK_SECONDS,
    SAMPLE_RATE,
    Event,
    Item,
    ResponseRecord,
    new_id,
    public,
    usage,
)

if TYPE_CHECKING:
    from openai_server import Answer
    from realtime_session import RealtimeSession


@dataclass
class Response:
    """A response in progress: its record, its options and what it output so far."""

    record: ResponseRecord
    metadata: Any
    modalities: list[str]
    tools: list[dict[str, Any]] | None
    scripted: tuple[str, Answer] | None = None  # (rule, answer) given, not the scenario's
    output: list[Item] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Responses:
    """The responses of one session, one at a time.

    Attributes:
        active: The response in progress, if any.
    """

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.active: Response | None = None

    def start(
        self, params: dict[str, Any], *, event_id: Any, answer: tuple[str, Answer] | None = None
    ) -> None:
        """Start a response with ``params`` (a ``response.create``'s ``response``); ``answer``
        (a rule's name and its answer) says what it says instead of the scenario."""
        record = ResponseRecord(
            id=new_id("resp_"),
            event_id=event_id if isinstance(event_id, str) else None,
            instructions=params.get("instructions"),
            tool_choice=params.get("tool_choice"),
        )
        response = Response(
            record=record,
            metadata=params.get("metadata"),
            modalities=params.get("output_modalities") or self.session.config["output_modalities"],
            tools=params.get("tools"),
            scripted=answer,
        )
        self.session.server.responses.append(record)
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

    def _describe(self, response: Response, *, token_usage: Any = None) -> Event:
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
            "output": [public(i) for i in response.output],
            "conversation_id": self.session.conversation_id,
            "output_modalities": response.modalities,
            "max_output_tokens": self.session.config.get("max_output_tokens", "inf"),
            "audio": {"output": self.session.config["audio"]["output"]},
            "usage": token_usage,
            "metadata": response.metadata,
        }

    async def _generate(self, response: Response) -> None:
        record = response.record
        await self.session.send("response.created", response=self._describe(response))
        record.messages = messages = self.session.chat_messages(record.instructions)
        text, calls = "", []
        try:
            record.rule, answer = response.scripted or self.session.server.scenario.answer(messages)
            text, calls = answer.text, list(answer.tool_calls)
        except LookupError:
            record.status, record.reason = "failed", "no_scenario_rule_matches"
        if (record.tool_choice or self.session.config.get("tool_choice")) == "none":
            calls = []  # the model may not call tools in this response
        known = {t.get("name") for t in (response.tools or self.session.config.get("tools") or [])}
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
        used = usage(messages, text)
        async with self.session.send_lock:
            # nothing may be sent between the response ending and its response.done
            self.active = None
            await self.session.send_locked(
                "response.done", response=self._describe(response, token_usage=used)
            )

    async def _add_output_item(self, response: Response, item: Item) -> int:
        response.output.append(item)
        index = len(response.output) - 1
        previous = self.session.conversation.insert(item, None)
        await self.session.send(
            "response.output_item.added",
            response_id=response.record.id,
            output_index=index,
            item=public(item),
        )
        await self.session.send(
            "conversation.item.added", previous_item_id=previous, item=public(item)
        )
        return index

    async def _finish_output_item(self, response: Response, item: Item, index: int) -> None:
        previous = None
        if item in self.session.items and (position := self.session.items.index(item)) > 0:
            previous = self.session.items[position - 1]["id"]
        await self.session.send(
            "response.output_item.done",
            response_id=response.record.id,
            output_index=index,
            item=public(item),
        )
        await self.session.send(
            "conversation.item.done", previous_item_id=previous, item=public(item)
        )

    async def _stream_message(self, response: Response, text: str) -> None:
        record = response.record
        audio = "audio" in response.modalities
        item: Item = {
            "id": new_id("item_"),
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
        await self.session.send(
            "response.content_part.added", **ids, content_index=0, part=dict(part)
        )
        item["content"] = [
            {"type": "output_audio", "transcript": ""}
            if audio
            else {"type": "output_text", "text": ""}
        ]
        samples = int(len(text) * self.session.server.scenario.seconds_per_char * SAMPLE_RATE)
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
                await self.session.send(
                    "response.output_audio_transcript.delta", **ids, content_index=0, delta=delta
                )
                await self.session.send(
                    "response.output_audio.delta",
                    **ids,
                    content_index=0,
                    delta=base64.b64encode(
                        tone(max(n, 0), SAMPLE_RATE, offset=step * chunk)
                    ).decode(),
                )
                item["_audio_ms"] += max(n, 0) * 1000 // SAMPLE_RATE
            else:
                await self.session.send(
                    "response.output_text.delta", **ids, content_index=0, delta=delta
                )
            if step < steps - 1 and await _cancelled_within(
                response.cancelled, CHUNK_SECONDS / self.session.server.pace
            ):
                break
        if audio:
            await self.session.send("response.output_audio.done", **ids, content_index=0)
            await self.session.send(
                "response.output_audio_transcript.done",
                **ids,
                content_index=0,
                transcript=part[key],
            )
        else:
            await self.session.send(
                "response.output_text.done", **ids, content_index=0, text=part[key]
            )
        await self.session.send(
            "response.content_part.done", **ids, content_index=0, part=dict(part)
        )
        item["status"] = "incomplete" if response.cancelled.is_set() else "completed"
        await self._finish_output_item(response, item, index)

    async def _stream_function_call(
        self, response: Response, name: str, arguments: dict[str, Any]
    ) -> None:
        call_id = new_id("call_")
        item: Item = {
            "id": new_id("item_"),
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
        await self.session.send(
            "response.function_call_arguments.delta", **ids, call_id=call_id, delta=encoded
        )
        await self.session.send(
            "response.function_call_arguments.done",
            **ids,
            call_id=call_id,
            name=name,
            arguments=encoded,
        )
        item.update(arguments=encoded, status="completed")
        response.record.tool_calls.append((call_id, name))
        await self._finish_output_item(response, item, index)

    async def close(self) -> None:
        """Stop the response in progress at once (the socket is closing)."""
        if self.active is not None and self.active.task is not None:
            self.active.task.cancel()
            await asyncio.gather(self.active.task, return_exceptions=True)
            self.active = None


async def _cancelled_within(cancelled: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(cancelled.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True
