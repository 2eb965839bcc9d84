"""The two tools the model uses to see and stop its running background calls.

Every :class:`~livekit.plugins.asynctools.AsyncToolset` offers these same two tool
objects, so an agent or session with several toolsets shows them to the model once.
They only ever see the calls of the session they are called from.
"""

from __future__ import annotations

import time
from typing import Any

from livekit.agents import llm

from ._compat import RunContext
from .session_scope import existing_scope
from .templates import CANCEL_REASON_REQUESTED, NO_RUNNING_TASKS


@llm.function_tool
async def get_running_tasks(ctx: RunContext[Any]) -> list[dict[str, Any]] | str:
    """List the background tool calls that are still running, with their call_id."""
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
        }
        for call in scope.calls
    ]


@llm.function_tool
async def cancel_task(ctx: RunContext[Any], call_id: str) -> str:
    """Cancel a running background tool call by its call_id.

    Args:
        call_id: The call_id of the running call, as listed by get_running_tasks.
    """
    scope = existing_scope(ctx.session)
    call = scope.get(call_id) if scope is not None else None
    if call is None:
        raise llm.ToolError(f"No running task has call_id {call_id}; it may have finished.")
    if not call.ctx.speech_handle.allow_interruptions:
        raise llm.ToolError(f"Task {call_id} cannot be cancelled: it disallowed interruptions.")
    await call.cancel(CANCEL_REASON_REQUESTED)
    return f"Task {call_id} cancelled."
