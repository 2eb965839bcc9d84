"""The two tools the model uses to see and stop its running background calls.

Every :class:`~livekit.plugins.asynctools.AsyncToolset` with the default descriptions
offers these same two tool objects, so an agent or session with several toolsets shows
them to the model once. A toolset that rewords their descriptions
(``Templates(get_running_tasks_description=...)``) gets its own pair, shared with every
toolset that uses the same words. They only ever see the calls of the session they are
called from.
"""

from __future__ import annotations

import time
from typing import Any

from livekit.agents import llm

from ._compat import RunContext
from .default_texts import (
    CANCEL_REASON_REQUESTED,
    CANCEL_TASK_DESCRIPTION,
    GET_RUNNING_TASKS_DESCRIPTION,
    NO_RUNNING_TASKS,
)
from .session_scope import existing_scope
from .templates import Templates, resolve


async def _list_running(ctx: RunContext[Any]) -> list[dict[str, Any]] | str:
    scope = existing_scope(ctx.session)
    if scope is None or not scope.calls:
        return NO_RUNNING_TASKS
    now = time.time()
    return [
        {
            "call_id": call.call_id,
            "function": call.function_call.name,
            "arguments": call.function_call.arguments,
            "running_for_seconds": round(now - call.started_at, 1),
            "last_update": call.last_update,
            "last_update_heard": call.last_update_heard,
            **call.progress.as_dict(),
            **({} if call.policy.cancellable else {"cancellable": False}),
        }
        for call in scope.calls
    ]


async def _cancel(ctx: RunContext[Any], call_id: str) -> str:
    """
    Args:
        call_id: The call_id of the running call, as listed by get_running_tasks.
    """
    scope = existing_scope(ctx.session)
    call = scope.get(call_id) if scope is not None and isinstance(call_id, str) else None
    if call is None:
        raise llm.ToolError(f"No running task has call_id {call_id}; it may have finished.")
    reason = None
    if not call.policy.cancellable:
        reason = f"the tool `{call.function_call.name}` may not be cancelled"
    elif not call.ctx.speech_handle.allow_interruptions:
        reason = "it disallowed interruptions"
    if reason is not None:
        raise llm.ToolError(call.text("cancel_refused", call_id=call_id, reason=reason))
    await call.cancel(CANCEL_REASON_REQUESTED)
    return f"Task {call_id} cancelled."


def _build(list_description: str, cancel_description: str) -> tuple[Any, Any]:
    listing = llm.function_tool(
        _list_running, name="get_running_tasks", description=list_description
    )
    cancelling = llm.function_tool(_cancel, name="cancel_task", description=cancel_description)
    return listing, cancelling


get_running_tasks, cancel_task = _build(GET_RUNNING_TASKS_DESCRIPTION, CANCEL_TASK_DESCRIPTION)
"""``get_running_tasks``: lists the session's running background calls with their
call_id, progress, and whether the user heard their last update.
``cancel_task(call_id)``: cancels one (refused, with a clear message, for a tool whose
policy says ``cancellable=False`` or whose speech disallowed interruptions)."""

# one pair of tool objects per wording, so toolsets that share it show the model one pair
_pairs: dict[tuple[str, str], tuple[Any, Any]] = {
    (GET_RUNNING_TASKS_DESCRIPTION, CANCEL_TASK_DESCRIPTION): (get_running_tasks, cancel_task)
}


def management_tools(templates: Templates | None) -> tuple[Any, Any]:
    """The two task tools, described as ``templates`` says (default wording otherwise)."""
    key = (
        str(resolve("get_running_tasks_description", (templates,))),
        str(resolve("cancel_task_description", (templates,))),
    )
    pair = _pairs.get(key)
    if pair is None:
        pair = _pairs[key] = _build(*key)
    return pair
