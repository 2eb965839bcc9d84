"""A scripted ``llm.RealtimeModel`` that keeps its own (remote) conversation.

It behaves like a provider with a server-side conversation: ``update_chat_ctx`` makes
the remote conversation equal to the context it is given, deleting what that context
lacks, exactly as a diffing provider plugin does; a response's assistant item joins the
remote conversation as soon as the response starts. Every update, deletion and reply
request is recorded, so a test can check that nothing the model had was removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from livekit import rtc
from livekit.agents import llm
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from .scripted_llm import DEFAULT_REPLY, LLMRequest, Reply, Responder, Script


@dataclass
class RealtimeReplyRequest:
    """One ``generate_reply`` call the realtime model received.

    Attributes:
        request: What the model could see: its remote conversation plus the instructions.
        instructions: The per-reply instructions, if any.
        tool_choice: The tool choice asked for.
    """

    request: LLMRequest
    instructions: str | None
    tool_choice: Any


def _capabilities(**values: bool) -> llm.RealtimeCapabilities:
    # the capability fields differ between releases: set the ones this release has
    known = {f.name for f in dataclasses.fields(llm.RealtimeCapabilities)}
    return llm.RealtimeCapabilities(**{k: v for k, v in values.items() if k in known})


class ScriptedRealtimeModel(llm.RealtimeModel):
    """A text-only realtime model answering from a script (see :class:`ScriptedLLM`).

    Provider plugins differ in how ``update_chat_ctx`` reads the context it is given;
    both styles a plugin is entitled to are available, and a provider that refuses tool
    outputs for call ids it never issued (as Gemini Live and Nova Sonic do):

    Args:
        replies: Replies used in order.
        responder: Chooses a reply from what the model can see.
        default: The reply once both have nothing to say.
        update_style: ``copy_first``: copy the given context, then diff (openai, azure,
            aws); ``as_given``: diff the items of the given context as they are, without
            copying it (ultravox).
        refuses_unknown_call_ids: Raise ``ValueError`` from ``update_chat_ctx`` when new
            function calls or outputs carry a call id the model never issued.
        manual_function_calls: The capability core reads to know whether the provider
            takes function calls it did not issue (False: like Gemini Live, Nova Sonic).
        update_delay: Seconds ``update_chat_ctx`` takes to be acknowledged: the remote
            conversation changes, and the call returns, only then (updates are applied
            one at a time, under a lock, as the openai plugin does).
    """

    def __init__(
        self,
        *,
        replies: Sequence[Reply] = (),
        responder: Responder | None = None,
        default: Reply = DEFAULT_REPLY,
        update_style: Literal["copy_first", "as_given"] = "copy_first",
        refuses_unknown_call_ids: bool = False,
        manual_function_calls: bool = True,
        update_delay: float = 0.0,
    ) -> None:
        super().__init__(
            capabilities=_capabilities(
                message_truncation=False,
                turn_detection=False,
                user_transcription=False,
                auto_tool_reply_generation=False,
                audio_output=False,
                manual_function_calls=manual_function_calls,
                per_response_tool_choice=True,
                mutable_chat_context=True,
                mutable_instructions=True,
                mutable_tools=True,
            )
        )
        if update_style not in ("copy_first", "as_given"):
            raise ValueError(f"update_style must be copy_first or as_given, got {update_style!r}")
        self.script = Script(replies=replies, responder=responder, default=default)
        self.update_style = update_style
        self.refuses_unknown_call_ids = refuses_unknown_call_ids
        self.update_delay = update_delay
        self.sessions: list[ScriptedRealtimeSession] = []

    @property
    def model(self) -> str:
        """The model name reported to metrics."""
        return "scripted-realtime"

    def session(self, **kwargs: Any) -> ScriptedRealtimeSession:
        """A new session (the agent activity opens one)."""
        session = ScriptedRealtimeSession(self)
        self.sessions.append(session)
        return session

    async def aclose(self) -> None:
        """Nothing to release."""


class ScriptedRealtimeSession(llm.RealtimeSession[Any]):
    """The provider side of one realtime conversation.

    Attributes:
        deleted_ids: Ids of remote items removed by ``update_chat_ctx``, in order.
        created_ids: Ids of remote items added by ``update_chat_ctx``, in order.
        reply_requests: Every ``generate_reply`` call, in order.
        issued_call_ids: Call ids of the function calls the model made.
        refused_updates: How many ``update_chat_ctx`` calls were refused.
    """

    def __init__(self, model: ScriptedRealtimeModel) -> None:
        super().__init__(model)
        self._model = model
        self._remote = llm.ChatContext.empty()
        self._tools = llm.ToolContext.empty()
        self._instructions = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self.deleted_ids: list[str] = []
        self.created_ids: list[str] = []
        self.reply_requests: list[RealtimeReplyRequest] = []
        self.issued_call_ids: set[str] = set()
        self.refused_updates = 0
        self._update_lock = asyncio.Lock()

    @property
    def chat_ctx(self) -> llm.ChatContext:
        """A copy of the remote conversation."""
        return self._remote.copy()

    @property
    def tools(self) -> llm.ToolContext:
        """The tools the model may call."""
        return self._tools.copy()

    async def update_instructions(self, instructions: str) -> None:
        """Set the session instructions."""
        self._instructions = instructions

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        """Make the remote conversation equal to ``chat_ctx``, as a diffing provider does."""
        async with self._update_lock:
            if self._model.update_style == "copy_first":
                wanted = chat_ctx.copy()
            else:  # diff the items as given: no copy() is called
                wanted = llm.ChatContext(list(chat_ctx.items))
            wanted_ids = {item.id for item in wanted.items}
            remote_ids = {item.id for item in self._remote.items}
            if self._model.refuses_unknown_call_ids and (
                unknown := [
                    i.call_id
                    for i in wanted.items
                    if i.id not in remote_ids
                    and i.type in ("function_call", "function_call_output")
                    and i.call_id not in self.issued_call_ids
                ]
            ):
                self.refused_updates += 1
                raise ValueError(f"tool outputs for call ids the model never issued: {unknown}")
            if self._model.update_delay:
                await asyncio.sleep(self._model.update_delay)
            # what a response added while the update waited was not in the diff: it stays
            added_meanwhile = [
                i for i in self._remote.items if i.id not in remote_ids and i.id not in wanted_ids
            ]
            self.deleted_ids.extend(
                i.id for i in self._remote.items if i.id in remote_ids and i.id not in wanted_ids
            )
            self.created_ids.extend(i.id for i in wanted.items if i.id not in remote_ids)
            self._remote = llm.ChatContext(
                [
                    i
                    for i in [*wanted.items, *added_meanwhile]
                    if i.type != "agent_config_update" and i.type != "agent_handoff"
                ]
            )

    async def update_tools(self, tools: list[Any]) -> None:
        """Set the tools the model may call."""
        self._tools = llm.ToolContext(tools)

    def update_options(self, *, tool_choice: NotGivenOr[Any] = NOT_GIVEN, **kwargs: Any) -> None:
        """Options are accepted and ignored."""

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        """Audio input is ignored (text-only model)."""

    def push_video(self, frame: rtc.VideoFrame) -> None:
        """Video input is ignored."""

    def generate_reply(
        self,
        *,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        tool_choice: NotGivenOr[Any] = NOT_GIVEN,
        tools: NotGivenOr[list[Any]] = NOT_GIVEN,
        **kwargs: Any,
    ) -> asyncio.Future[llm.GenerationCreatedEvent]:
        """Start a response: its assistant item joins the remote conversation at once."""
        items = list(self._remote.items)
        extra = instructions if isinstance(instructions, str) else None
        if extra:
            items.append(llm.ChatMessage(role="system", content=[extra]))
        request = LLMRequest(
            items=items,
            tool_names=list(self._tools.function_tools),
            tool_choice=tool_choice,
        )
        self.reply_requests.append(
            RealtimeReplyRequest(request=request, instructions=extra, tool_choice=tool_choice)
        )
        reply = self._model.script.reply_to(request)

        message_id = self._model.script.next_id("item")
        if reply.text:
            self._remote.items.append(
                llm.ChatMessage(id=message_id, role="assistant", content=[reply.text])
            )
        calls = [
            llm.FunctionCall(
                call_id=c.call_id or self._model.script.next_id(),
                name=c.name,
                arguments=c.arguments if isinstance(c.arguments, str) else _json(c.arguments),
            )
            for c in reply.tool_calls
        ]
        self._remote.items.extend(calls)
        self.issued_call_ids.update(c.call_id for c in calls)

        fut: asyncio.Future[llm.GenerationCreatedEvent] = asyncio.Future()
        fut.set_result(
            _generation_event(message_id=message_id, reply=reply, calls=calls, user_initiated=True)
        )
        return fut

    def commit_audio(self) -> None:
        """No audio buffer."""

    def clear_audio(self) -> None:
        """No audio buffer."""

    def interrupt(self) -> None:
        """Responses are short; nothing to stop."""

    def truncate(self, **kwargs: Any) -> None:
        """Nothing to truncate (no audio)."""

    async def aclose(self) -> None:
        """Nothing to release."""


def _json(arguments: dict[str, Any]) -> str:
    import json

    return json.dumps(arguments)


def _generation_event(
    *, message_id: str, reply: Reply, calls: list[llm.FunctionCall], user_initiated: bool
) -> llm.GenerationCreatedEvent:
    async def text() -> AsyncIterator[str]:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.text:
            yield reply.text

    async def audio() -> AsyncIterator[rtc.AudioFrame]:
        return
        yield  # an async generator with no frames

    async def messages() -> AsyncIterator[llm.MessageGeneration]:
        if not reply.text:
            return
        modalities: asyncio.Future[list[Any]] = asyncio.Future()
        modalities.set_result(["text"])
        yield llm.MessageGeneration(
            message_id=message_id,
            text_stream=text(),
            audio_stream=audio(),
            modalities=modalities,
        )

    async def functions() -> AsyncIterator[llm.FunctionCall]:
        if reply.delay and not reply.text:
            await asyncio.sleep(reply.delay)
        for c in calls:
            yield c

    return llm.GenerationCreatedEvent(
        message_stream=messages(), function_stream=functions(), user_initiated=user_initiated
    )
