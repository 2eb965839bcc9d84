"""Everything that differs between the supported livekit-agents releases (1.5.2 to 1.8.x).

Each difference is chosen by probing for the feature (an attribute, a signature), never
by parsing a version string. When a hook the plugin needs is missing, importing the
plugin fails with a message naming the supported range.

Differences handled here:

- ``RunContext.__init__`` gained ``activity=`` (1.8).
- The function-call flag that lets a tool's background task await its own speech handle
  is ``__livekit_agents_tool_pending`` (1.5) or ``__livekit_agents_tool_non_blocking``
  (1.6+, where ``RunContext`` has its own ``update()``).
- Waiting until the session is idle: ``AgentSession.wait_for_inactive`` (1.5) became
  ``wait_for_idle`` (1.6+), which raises once the session is closing.
- ``ToolFlag.CANCELLABLE`` (1.6+) makes core add its own ``lk_agents_*`` management
  tools: it is never forwarded to the tools core sees.
- Core tool lifecycle events (``tool_execution_updated``, 1.6+; emitted through
  ``AgentSession._tool_execution_updated`` from 1.7): a background call's real progress
  and end are reported through them.

And the private corners of core the plugin relies on, in one place: the agent's chat
context (:func:`add_to_local_chat`), its speech queue (:func:`speeches_under_way`) and
the handoff task (:func:`wait_for_handoff`). The realtime provider plugins' side (the
provider session of the current activity, adding to its conversation, reconnections and
Gemini's scheduling) is in :mod:`.providers`, whose names this module re-exports: the
plugin reads both as one layer, ``_compat``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import ValidationError

from livekit.agents import llm

SUPPORTED_RANGE = "livekit-agents>=1.5.2,<1.9"


def _unsupported(what: str) -> ImportError:
    return ImportError(
        f"livekit-plugins-asynctools needs {what}, which this livekit-agents release "
        f"does not provide. Supported releases: {SUPPORTED_RANGE}."
    )


try:
    from livekit.agents.llm.tool_context import ToolFlag
    from livekit.agents.llm.utils import prepare_function_arguments
    from livekit.agents.voice.agent import _pass_through_activity_task_info
    from livekit.agents.voice.events import RunContext
    from livekit.agents.voice.generation import make_tool_output
except ImportError as e:  # pragma: no cover - exercised only on unsupported releases
    raise _unsupported(f"`{e.name}`") from e

for _name in ("Toolset", "FunctionTool", "RawFunctionTool", "ToolError"):
    if not hasattr(llm, _name):  # pragma: no cover
        raise _unsupported(f"`livekit.agents.llm.{_name}`")

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.voice import SpeechHandle

_RunContextT = TypeVar("_RunContextT", bound=RunContext[Any])

_RUN_CONTEXT_PARAMS = inspect.signature(RunContext.__init__).parameters

# 1.6 moved async tools into core and renamed the flag with it: RunContext.update() is
# the marker of that release line.
NON_BLOCKING_FLAG = (
    "__livekit_agents_tool_non_blocking"
    if hasattr(RunContext, "update")
    else "__livekit_agents_tool_pending"
)

CANCELLABLE_FLAG: ToolFlag | None = getattr(ToolFlag, "CANCELLABLE", None)

_FUNCTION_TOOL_PARAMS = inspect.signature(llm.function_tool).parameters

from .providers import (  # noqa: E402 - after the release checks above
    ReconnectWatch,
    add_to_provider,
    interrupt_with_response,
    missing_from_provider,
    provider_session,
    release_provider_update,
    takes_injected_function_calls,
    unanswered,
    wait_until_provider_holds,
)

__all__ = [
    "SUPPORTED_RANGE",
    "NON_BLOCKING_FLAG",
    "RunContext",
    "make_tool_output",
    "bind_arguments",
    "pass_through_task_info",
    "derive_run_context",
    "forwardable_flags",
    "raw_tool_options",
    "wait_for_core_idle",
    "session_is_closing",
    "SessionClosing",
    "wait_for_handoff",
    "handoff_under_way",
    "speeches_under_way",
    "add_to_local_chat",
    "replace_in_local_chat",
    "provider_session",
    "add_to_provider",
    "takes_injected_function_calls",
    "missing_from_provider",
    "unanswered",
    "ReconnectWatch",
    "wait_until_provider_holds",
    "release_provider_update",
    "interrupt_with_response",
    "ToolLifecycle",
    "tool_lifecycle",
    "silent_tool_answer",
]


# 1.8: a tool result that asks for no reply
_TOOL_RESULT: Any = getattr(llm, "ToolResult", None)
if "reply_required" not in getattr(_TOOL_RESULT, "__dataclass_fields__", {}):
    _TOOL_RESULT = None


def silent_tool_answer(message: Any) -> tuple[Any, bool]:
    """What a tool call returns so that core records ``message`` without a reply.

    Returns the answer and whether ``message`` must still be recorded separately: 1.8's
    ``ToolResult(reply_required=False)`` carries it; earlier releases only skip the reply
    for a tool that returns nothing, so the message follows as a silent output.
    """
    if _TOOL_RESULT is not None:
        return _TOOL_RESULT(message, reply_required=False), False
    return None, True


def bind_arguments(
    tool: llm.FunctionTool[Any, Any] | llm.RawFunctionTool[Any, Any],
    raw_arguments: dict[str, Any],
    ctx: RunContext[Any],
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Validate the model's arguments and bind them, with ``ctx``, to ``tool``'s parameters.

    Raises:
        ToolError: The arguments do not validate (1.5.2 raises pydantic's error itself:
            it is turned into the ``ToolError`` later releases raise, so the model is told).
    """
    try:
        return prepare_function_arguments(fnc=tool, json_arguments=raw_arguments, call_ctx=ctx)
    except llm.ToolError:
        raise
    except (ValidationError, ValueError, TypeError) as e:
        raise llm.ToolError(f"Error parsing arguments for `{tool.info.name}`: {e}") from e


pass_through_task_info: Callable[[asyncio.Task[Any]], None] = _pass_through_activity_task_info
"""Let a task act as the tool call running it (speech handle, function call): core's own
function, the same on every supported release (called once per call)."""


def derive_run_context(cls: type[_RunContextT], base: RunContext[Any]) -> dict[str, Any]:
    """Keyword arguments for ``RunContext.__init__`` that reproduce ``base``."""
    kwargs: dict[str, Any] = {
        "session": base.session,
        "speech_handle": base.speech_handle,
        "function_call": base.function_call,
    }
    if "activity" in _RUN_CONTEXT_PARAMS:
        kwargs["activity"] = getattr(base, "_activity", None)
    return kwargs


def forwardable_flags(flags: ToolFlag) -> ToolFlag:
    """The tool flags core may see: ``CANCELLABLE`` would summon core's own task tools."""
    if CANCELLABLE_FLAG is not None and CANCELLABLE_FLAG in flags:
        return flags & ~CANCELLABLE_FLAG
    return flags


def raw_tool_options() -> dict[str, Any]:
    """Extra ``function_tool`` options for our wrappers: core must not deduplicate them."""
    return {"on_duplicate": "allow"} if "on_duplicate" in _FUNCTION_TOOL_PARAMS else {}


class SessionClosing(Exception):
    """The session is shutting down: nothing more will be spoken."""


async def wait_for_core_idle(session: AgentSession[Any]) -> None:
    """Core's own idle wait: no speech scheduled or playing, user silent, no pending EOU.

    Follows agent handoffs (1.6+ raises when the activity it waits on closes).

    Raises:
        SessionClosing: The session is shutting down.
    """
    while True:
        if session_is_closing(session):
            raise SessionClosing
        try:
            wait_for_idle = getattr(session, "wait_for_idle", None)
            if wait_for_idle is not None:
                await wait_for_idle()
            else:
                await session.wait_for_inactive()  # type: ignore[attr-defined,unused-ignore]
        except Exception as e:
            if type(e).__name__ != "ActivityClosedError":
                raise
            # an agent handoff closed the activity we waited on: wait for the next one
            await wait_for_handoff(session)
            continue
        return


async def wait_for_handoff(session: AgentSession[Any]) -> bool:
    """Wait for an agent handoff in progress to finish; False when there is none.

    While the old activity drains, core refuses new speech (1.5 even leaves a broken
    generation behind), and its idle wait may already report idle.
    """
    if (handoff := handoff_under_way(session)) is not None:
        await asyncio.wait([handoff])
        return True
    return False


def handoff_under_way(session: AgentSession[Any]) -> asyncio.Task[Any] | None:
    """The task of an agent handoff in progress, or None (see :func:`wait_for_handoff`)."""
    handoff = getattr(session, "_update_activity_atask", None)
    if isinstance(handoff, asyncio.Task) and not handoff.done():
        return handoff
    return None


def speeches_under_way(session: AgentSession[Any]) -> list[SpeechHandle]:
    """The speech playing now and those queued behind it, in the current agent's activity.

    The queue is the activity's private ``_speech_q`` of ``(priority, time, handle)``, the
    same on every supported release; without it only the current speech is known.
    """
    activity = getattr(session, "_activity", None)
    speeches = [entry[-1] for entry in getattr(activity, "_speech_q", ())]
    if (current := session.current_speech) is not None:
        speeches.append(current)
    return [s for s in speeches if not s.done()]


def listen_again(session: AgentSession[Any], event: str, listener: Callable[..., Any]) -> None:
    """Attach ``listener`` to ``event`` again, after ``session.on()`` took it once and
    ``session.off()`` removed it.

    livekit-rtc's ``EventEmitter`` keeps each event's listeners in a set in ``_events``,
    on every supported release, and ``off()`` leaves that set in place: adding to it skips
    what ``on()`` checks again (a deprecated event's warning, and whether the listener is a
    coroutine function, seven calls in all), which this listener passed the first time.
    Elsewhere it is ``session.on()``.
    """
    listeners = getattr(session, "_events", None)
    if type(listeners) is dict and type(attached := listeners.get(event)) is set:
        attached.add(listener)
    else:
        session.on(event, listener)  # type: ignore[arg-type]


def session_is_closing(session: AgentSession[Any]) -> bool:
    """Whether the session has started (or finished) shutting down."""
    if getattr(session, "_closing", False) or getattr(session, "_closing_task", None):
        return True
    return not getattr(session, "_started", True)


def add_to_local_chat(session: AgentSession[Any], items: Sequence[llm.ChatItem]) -> None:
    """Add ``items`` to the current agent's chat context and to the session history.

    Both are extended in place, as core does with its own tool outputs: the cost does
    not grow with the history, and the next reply sees the items.
    """
    session.current_agent._chat_ctx.insert(items)
    session.history.insert(items)


def replace_in_local_chat(
    session: AgentSession[Any], old: Sequence[llm.ChatItem], new: Sequence[llm.ChatItem]
) -> None:
    """Put ``new`` where ``old`` stood in the agent's chat context and the session history.

    For outputs the realtime model refused: what the model holds and what core sends it
    next must agree, or core's own updates would offer it the refused items again.
    """
    old_ids = {item.id for item in old}
    for ctx in (session.current_agent._chat_ctx, session.history):
        items = ctx.items
        at = next((i for i, item in enumerate(items) if item.id in old_ids), None)
        if at is None:
            continue
        kept = [item for item in items if item.id not in old_ids]
        kept[at:at] = list(new)
        ctx.items = kept


_CORE_REPLY_STATUS = {
    "scheduled": "scheduled",
    "heard": "completed",
    "interrupted": "interrupted",
    "not_given": "skipped",
}


def tool_lifecycle(session: AgentSession[Any]) -> ToolLifecycle | None:
    """Core's tool events for ``session``'s background calls; None on a release without
    them (1.5.x), so that the plugin's own events cost no call into this layer there."""
    lifecycle = ToolLifecycle(session)
    return lifecycle if lifecycle.reports else None


class ToolLifecycle:
    """Reports a background call's progress and end through core's tool events (1.6+).

    Core sees our wrapper return at the first update and reports the call as ended there;
    these events then carry the later updates and the real end (``{call_id}_final``), so
    no listener is left believing the task finished at its first update. On releases
    without these events this is a no-op.
    """

    def __init__(self, session: AgentSession[Any]) -> None:
        self._session = session
        self._events: Any = None
        self._updates_carry_silent = False
        self._reply_event: Any = None
        # 1.7+ routes these events through a session hook (it restarts the away timer)
        self._emit = getattr(session, "_tool_execution_updated", None) or (
            lambda ev: session.emit("tool_execution_updated", ev)
        )
        try:
            from livekit.agents.voice import events
        except ImportError:  # pragma: no cover
            self._emit = None
            return
        self._events = events
        if not all(
            hasattr(events, n)
            for n in ("ToolExecutionUpdatedEvent", "ToolCallUpdated", "ToolCallEnded")
        ):
            self._emit = None
            return
        # probed once per session, not per update: 1.8 added both
        self._updates_carry_silent = "silent" in events.ToolCallUpdated.model_fields
        self._reply_event = getattr(events, "ToolReplyUpdated", None)

    @property
    def reports(self) -> bool:
        """Whether this release has core's tool events (1.6+)."""
        return self._emit is not None

    def updated(self, *, entry_id: str, call_id: str, message: str, silent: bool) -> None:
        """A progress update after the first one (``silent`` where core knows it, 1.8)."""
        if self._emit is None:
            return
        fields: dict[str, Any] = {"id": entry_id, "call_id": call_id, "message": message}
        if self._updates_carry_silent:
            fields["silent"] = silent
        update = self._events.ToolCallUpdated(**fields)
        self._emit(self._events.ToolExecutionUpdatedEvent(update=update))

    def reply(self, *, update_ids: list[str], status: str, speech_id: str) -> None:
        """A deferred reply's progress, where core has an event for it (1.8)."""
        reply_event = self._reply_event
        if reply_event is None or self._emit is None:
            return
        core_status = _CORE_REPLY_STATUS[status]
        update = reply_event(update_ids=update_ids, status=core_status, speech_id=speech_id)
        self._emit(self._events.ToolExecutionUpdatedEvent(update=update))

    def ended(
        self, *, call_id: str, status: Literal["done", "error", "cancelled"], message: str | None
    ) -> None:
        """The background task really ended: ``done``, ``error`` or ``cancelled``."""
        if self._emit is None:
            return
        update = self._events.ToolCallEnded(
            id=f"{call_id}_final", call_id=call_id, message=message, status=status
        )
        self._emit(self._events.ToolExecutionUpdatedEvent(update=update))
