"""The wire format of the local realtime server: ids, records, errors, the conversation.

Shared by :mod:`realtime_server` (the endpoint), :mod:`realtime_session` (one websocket)
and :mod:`realtime_responses` (the model's side). Events and items are plain dicts, as
they travel in JSON; what the server records of them is in the dataclasses here, and a
session's items are kept in order by :class:`Conversation`.
"""

from __future__ import annotations

import copy
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from openai_server import Message

Event = dict[str, Any]
Item = dict[str, Any]

SAMPLE_RATE = 24000
"""Output and input audio: PCM16, 24 kHz, mono."""

CHUNK_SECONDS = 0.1
"""Audio per ``response.output_audio.delta``."""

AUDIO_FORMAT = {"type": "audio/pcm", "rate": SAMPLE_RATE}
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 16) -> str:
    """An id as OpenAI makes them: ``prefix`` and random letters and digits."""
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
        user_speaking: Whether the user was speaking when it arrived (scripted, or heard
            in the input audio).
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


class Conversation:
    """A session's conversation: its items in order, placed as OpenAI places them.

    Attributes:
        items: The items, in order.
    """

    def __init__(self) -> None:
        self.items: list[Item] = []

    def find(self, item_id: Any) -> Item | None:
        """The item with ``item_id``, if there is one."""
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


def session_config(session_id: str, model: str) -> dict[str, Any]:
    """A new session's configuration, with OpenAI's defaults."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
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
                "format": dict(AUDIO_FORMAT),
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
            "output": {"format": dict(AUDIO_FORMAT), "voice": "alloy", "speed": 1.0},
        },
    }


def missing(param: str) -> ClientError:
    """The error OpenAI sends for a missing parameter."""
    return ClientError(
        f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param
    )


def validated_item(item: Any) -> Item:
    """A copy of a client's conversation item, checked as OpenAI checks it."""
    if not isinstance(item, dict):
        raise missing("item")
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
            raise missing(f"item.{name}")
    if kind == "message" and item["role"] not in ("user", "assistant", "system"):
        raise ClientError(
            f"Invalid value: '{item['role']}'. Supported values are: 'user', 'assistant' and "
            "'system'.",
            code="invalid_value",
            param="item.role",
        )
    return item


def item_text(item: Item) -> str:
    """The text of a message item (its text parts and transcripts)."""
    parts = []
    for part in item.get("content") or []:
        if isinstance(part, dict):
            parts.append(part.get("text") or part.get("transcript") or "")
    return " ".join(p for p in parts if p)


def chat_messages(
    instructions: str | None, items: list[Item], response_instructions: str | None
) -> list[Message]:
    """A realtime conversation as chat-completions ``messages``: the session's
    instructions first, the items in order (function calls of one turn in one assistant
    message), a response's own instructions last."""
    messages: list[Message] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        if item["type"] == "message":
            messages.append({"role": item["role"], "content": item_text(item)})
        elif item["type"] == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments") or ""},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item["type"] == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
    if response_instructions:
        messages.append({"role": "system", "content": response_instructions})
    return messages


def public(item: Item) -> Item:
    """The item as OpenAI sends it (without this server's bookkeeping)."""
    return {k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("_")}


def usage(messages: list[Message], text: str) -> dict[str, Any]:
    """A response's token usage, as OpenAI reports it."""
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


def http_error(status: int, message: str, code: str | None) -> web.Response:
    """An HTTP error answer with OpenAI's error body."""
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
