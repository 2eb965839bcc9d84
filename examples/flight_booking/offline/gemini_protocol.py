"""The wire format of the local Gemini Live server: fields, errors, records, helpers.

Shared by :mod:`gemini_server` (the endpoint) and :mod:`gemini_session` (one websocket).
Messages are plain dicts in camelCase (:func:`camel` turns the snake_case field names the
service also takes into camelCase); a message the service would refuse raises
:class:`Closed`, which closes the socket with the service's code and reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai_server import Message

PATH = "/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
OUTPUT_RATE = 24000
CHUNK_SECONDS = 0.1
STRUCTS = {"args", "response", "parametersJsonSchema", "responseJsonSchema"}
FIELDS = {
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
SCHEDULING = {"SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"}
INSTRUCTIONS = re.compile(r"\A<instructions>\n(.*)\n</instructions>\Z", re.S)


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


def camel(value: Any, key: str = "") -> Any:
    """Field names in camelCase (the service takes both); Struct values kept as sent."""
    if key in STRUCTS:
        return value
    if isinstance(value, list):
        return [camel(v, key) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            ck = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k)
            out[ck] = camel(v, ck)
        return out
    return value


def check_fields(body: dict[str, Any], kind: str) -> list[str]:
    """The field names of ``body`` (a ``kind`` message); an unknown one closes the socket."""
    known = FIELDS.get(kind)
    if known is not None:
        for name in body:
            if name not in known:
                where = f" at '{kind}'" if kind else ""
                raise Closed(
                    f'Invalid JSON payload received. Unknown name "{name}"{where}: '
                    "Cannot find field."
                )
    return list(body)


def content_text(content: dict[str, Any]) -> str:
    """The text of a ``Content`` (its text parts, joined)."""
    return "".join(p.get("text") or "" for p in content.get("parts") or [] if isinstance(p, dict))


def response_output(response: dict[str, Any]) -> str:
    """A function response as a tool message's content: its ``output`` (or ``error``)."""
    body = response.get("response") or {}
    value = body.get("output", body.get("error")) if len(body) == 1 else None
    return value if isinstance(value, str) else json.dumps(body)


def usage(messages: list[Message], turn: Turn) -> dict[str, Any]:
    """A turn's ``usageMetadata``, as the service reports it."""
    prompt = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1
    response = len(turn.text) // 2
    return {
        "promptTokenCount": prompt,
        "responseTokenCount": response,
        "totalTokenCount": prompt + response,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": response}],
    }
