"""Prompt templates: every text the plugin shows the model.

Each is a public constant with named ``str.format`` placeholders, so an agent can
reword them (pass a template to :meth:`AsyncRunContext.update`, or format your own).
"""

from __future__ import annotations

UPDATE_TEMPLATE = """The tool `{function_name}` (call_id {call_id}) reported progress: {message}
The task is still running, so DON'T make up or give information not included in the \
message above."""
"""Wraps a string passed to ``ctx.update()``. Placeholders: ``function_name``, ``call_id``,
``message``."""

COMPLETED_WITHOUT_RESULT = """The tool `{function_name}` (call_id {call_id}) has finished.
It returned no further information."""
"""Recorded when a background tool returns ``None`` after its first update, so the model
knows the task is over. Placeholders: ``function_name``, ``call_id``."""

CANCELLED_TEMPLATE = """The tool `{function_name}` (call_id {call_id}) was cancelled {reason} \
before it finished. Its work is incomplete: do not present any result for it."""
"""Recorded when a running task is cancelled. Placeholders: ``function_name``, ``call_id``,
``reason`` (one of the ``CANCEL_REASON_*`` constants)."""

CANCEL_REASON_REQUESTED = "on request"
"""``reason`` for a task cancelled through the ``cancel_task`` tool."""

CANCEL_REASON_REPLACED = "because a newer call of the same tool replaced it"
"""``reason`` for a task cancelled by the ``replace`` duplicate policy."""

CANCEL_REASON_CLOSED = "because its toolset was closed"
"""``reason`` for a task cancelled by :meth:`AsyncToolset.aclose` (agent handoff, shutdown)."""

CANCEL_REASON_SESSION_ENDED = "because the session ended"
"""``reason`` for a task cancelled because its session closed (kept in the history only)."""

DUPLICATE_REJECT = """Same tool `{function_name}` is already running:
{running_fnc_calls}
If you want to cancel the existing one, call `cancel_task` with its call_id."""
"""Returned to the model by the ``reject`` duplicate policy. Placeholders: ``function_name``,
``running_fnc_calls`` (one JSON function call per line)."""

DUPLICATE_CONFIRM = """Same tool `{function_name}` is already running:
{running_fnc_calls}
Re-call with `{confirm_param}` set to true to run a duplicate if the user confirms it is needed,
or if you want to cancel the existing one, call `cancel_task` with its call_id."""
"""Returned to the model by the ``confirm`` duplicate policy. Placeholders: ``function_name``,
``running_fnc_calls``, ``confirm_param``."""

REPLY_INSTRUCTIONS = """New results arrived from background tool calls \
(call_ids: {pending_call_ids}).
Summarize these results to the user naturally. Do NOT repeat information you have already \
told the user."""
"""Instructions of the reply that speaks pending updates and results. Placeholder:
``pending_call_ids``."""

NO_RUNNING_TASKS = "No background tasks are running."
"""What ``get_running_tasks`` answers when nothing runs in the session."""

CONFIRM_DUPLICATE_PARAM = "confirm_duplicate"
"""Boolean parameter added to a tool's schema under the ``confirm`` duplicate policy."""
