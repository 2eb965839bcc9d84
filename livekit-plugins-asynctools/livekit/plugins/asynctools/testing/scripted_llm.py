"""A scripted ``llm.LLM``: answers from a script and records what it was sent."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import llm
from livekit.agents.llm import ChatChunk, ChoiceDelta, FunctionToolCall
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)


@dataclass(frozen=True)
class ToolCall:
    """A tool call the scripted model makes.

    Attributes:
        name: The tool's name.
        arguments: The arguments, as a dict (sent as JSON) or a raw JSON string.
        call_id: The call id; generated (``call_1``, ``call_2``...) when not given.
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    call_id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One answer of the scripted model.

    Attributes:
        text: The assistant text, streamed in small chunks.
        tool_calls: Tool calls made after the text.
        delay: Seconds before the first chunk (time to first token).
        error: Raised by the model's stream after ``delay`` (nothing is streamed), to
            simulate a provider failure: e.g. ``APIError("overloaded", retryable=False)``.
            Core retries a retryable ``APIError`` on the same stream, which raises
            again each time; ``retryable=False`` fails the reply at once.
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    delay: float = 0.0
    error: Exception | None = field(default=None, kw_only=True)


@dataclass
class LLMRequest:
    """What the model was sent in one ``chat()`` call.

    Attributes:
        items: A copy of the chat context items, as they were when sent.
        tool_names: The names of the function tools offered.
        tool_choice: The tool choice asked for (``NOT_GIVEN`` when unset).
    """

    items: list[llm.ChatItem]
    tool_names: list[str]
    tool_choice: Any

    @property
    def last_item(self) -> llm.ChatItem:
        """The newest item of the context."""
        return self.items[-1]

    def outputs(self) -> list[llm.FunctionCallOutput]:
        """The function call outputs in the context, in order."""
        return [i for i in self.items if i.type == "function_call_output"]

    def output_ids(self) -> list[str]:
        """The call ids of the function call outputs in the context, in order."""
        return [o.call_id for o in self.outputs()]

    def texts(self, role: str) -> list[str]:
        """The text of every message with ``role``, in order."""
        return [i.text_content or "" for i in self.items if i.type == "message" and i.role == role]

    def mentions(self, text: str) -> bool:
        """Whether any system or developer message contains ``text`` (e.g. instructions)."""
        return any(text in t for role in ("system", "developer") for t in self.texts(role))

    def last_user_text(self) -> str | None:
        """The text of the newest user message, if any."""
        texts = self.texts("user")
        return texts[-1] if texts else None


DEFAULT_REPLY = Reply(text="OK.")
"""What a scripted model says when its script has nothing to say."""

Responder = Callable[[LLMRequest], "Reply | None"]


class Script:
    """Chooses a scripted model's replies: ``responder`` first, then ``replies`` in order,
    then ``default``. Also hands out deterministic call ids (``call_1``, ``call_2``...).

    Args:
        replies: Replies used in order.
        responder: Chooses a reply from what the model was sent; ``None`` defers to
            ``replies``.
        default: The reply once both have nothing to say.
    """

    def __init__(
        self,
        *,
        replies: Sequence[Reply] = (),
        responder: Responder | None = None,
        default: Reply = DEFAULT_REPLY,
    ) -> None:
        self._replies = list(replies)
        self._responder = responder
        self._default = default
        self._ids = itertools.count(1)

    def reply_to(self, request: LLMRequest) -> Reply:
        """The reply to ``request``."""
        if self._responder is not None and (reply := self._responder(request)) is not None:
            return reply
        if self._replies:
            return self._replies.pop(0)
        return self._default

    def next_id(self, prefix: str = "call") -> str:
        """A fresh id: ``<prefix>_<n>``."""
        return f"{prefix}_{next(self._ids)}"


class ScriptedLLM(llm.LLM[Any]):
    """An LLM that answers from a script, for offline tests of a real ``AgentSession``.

    Each ``chat()`` is answered by ``responder(request)`` when it returns a reply, else
    by the next reply of ``replies``, else by ``default``. Every request is recorded in
    :attr:`requests`.

    Args:
        replies: Replies used in order.
        responder: Chooses a reply from what the model was sent; ``None`` defers to
            ``replies``.
        default: The reply once both have nothing to say.

    Example::

        def respond(req: LLMRequest) -> Reply | None:
            if req.last_user_text() == "book a flight":
                return Reply(tool_calls=[ToolCall("book_flight", {"destination": "Tokyo"})])
            return Reply(text="Done.")

        llm = ScriptedLLM(responder=respond)
    """

    def __init__(
        self,
        *,
        replies: Sequence[Reply] = (),
        responder: Responder | None = None,
        default: Reply = DEFAULT_REPLY,
    ) -> None:
        super().__init__()
        self._script = Script(replies=replies, responder=responder, default=default)
        self.requests: list[LLMRequest] = []

    @property
    def model(self) -> str:
        """The model name reported to metrics."""
        return "scripted"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[Any] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[Any] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        **kwargs: Any,
    ) -> llm.LLMStream:
        """Record the request and stream the scripted reply."""
        request = LLMRequest(
            items=[item.model_copy() for item in chat_ctx.items],
            tool_names=[t.info.name for t in tools or [] if hasattr(t, "info")],
            tool_choice=tool_choice,
        )
        self.requests.append(request)
        reply = self._script.reply_to(request)
        return _ScriptedStream(
            self, reply=reply, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


class _ScriptedStream(llm.LLMStream):
    def __init__(
        self,
        llm_: ScriptedLLM,
        *,
        reply: Reply,
        chat_ctx: llm.ChatContext,
        tools: list[Any],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(llm_, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._scripted = llm_
        self._reply = reply

    async def _run(self) -> None:
        if self._reply.delay:
            await asyncio.sleep(self._reply.delay)
        if self._reply.error is not None:
            raise self._reply.error
        text = self._reply.text
        for i in range(0, len(text), 8):
            self._send(ChoiceDelta(role="assistant", content=text[i : i + 8]))
        if self._reply.tool_calls:
            calls = [
                FunctionToolCall(
                    name=c.name,
                    arguments=c.arguments
                    if isinstance(c.arguments, str)
                    else json.dumps(c.arguments),
                    call_id=c.call_id or self._scripted._script.next_id(),
                )
                for c in self._reply.tool_calls
            ]
            self._send(ChoiceDelta(role="assistant", content=None, tool_calls=calls))

    def _send(self, delta: ChoiceDelta) -> None:
        self._event_ch.send_nowait(ChatChunk(id="scripted", delta=delta))
