"""Every text the plugin shows the model by default, and the placeholders each one takes.

Each default is a public constant with named ``str.format`` placeholders, documented by
the typed dict named next to it. To reword one, see
:mod:`~livekit.plugins.asynctools.templates`.

Example::

    from livekit.plugins.asynctools.default_texts import CANCELLED_TEMPLATE

    CANCELLED_TEMPLATE.format(function_name="search", call_id="c1", reason="on request")
"""

from __future__ import annotations

from typing import TypedDict

UPDATE_TEMPLATE = """The tool `{function_name}` (call_id {call_id}) reported progress: \
{message}{details}
The task is still running, so DON'T make up or give information not included in the \
message above."""
"""Wraps a string passed to ``ctx.update()``. Placeholders: :class:`UpdateArgs`."""

COMPLETED_WITHOUT_RESULT = """The tool `{function_name}` (call_id {call_id}) has finished.
It returned no further information."""
"""Recorded when a background tool returns ``None`` after its first update, so the model
knows the task is over. Placeholders: :class:`CallArgs`."""

CANCELLED_TEMPLATE = """The tool `{function_name}` (call_id {call_id}) was cancelled {reason} \
before it finished. Its work is incomplete: do not present any result for it."""
"""Recorded when a running task is cancelled. Placeholders: :class:`CancelledArgs`
(``reason`` is one of the ``CANCEL_REASON_*`` constants)."""

TIMED_OUT_TEMPLATE = """The tool `{function_name}` (call_id {call_id}) ran out of time after \
{timeout:g} seconds and was stopped before it finished. Its work is incomplete: tell the user \
it took too long and offer to try again."""
"""Recorded when a call runs past its timeout. Placeholders: :class:`TimedOutArgs`."""

STILL_RUNNING_TEMPLATE = """The tool `{function_name}` (call_id {call_id}) is still working, \
{elapsed:.0f} seconds so far. Tell the user it is taking longer than usual and ask whether \
to keep waiting or cancel it (with `cancel_task`)."""
"""The update a call sends itself at its soft deadline. Placeholders: :class:`ElapsedArgs`."""

FILLER_INSTRUCTIONS = """The tool `{function_name}` is still running ({elapsed:.0f} seconds so \
far) and the user has heard nothing about it for a while. Say one short, natural sentence \
that you are still working on it. Do not invent any result."""
"""Instructions of a model-generated filler line. Placeholders: :class:`ElapsedArgs`."""

FILLER_LINE_INSTRUCTIONS = """Say exactly this, and nothing else: "{line}\""""
"""Instructions that make a realtime model without a TTS speak a fixed filler line.
Placeholder: ``line``."""

ASK_INSTRUCTIONS = 'Ask the user this question, in your own words, and nothing else: "{question}"'
"""Instructions of the question ``ctx.ask()`` has the agent ask. Placeholder: ``question``."""

CANCEL_REASON_REQUESTED = "on request"
"""``reason`` for a task cancelled through the ``cancel_task`` tool."""

CANCEL_REASON_REPLACED = "because a newer call of the same tool replaced it"
"""``reason`` for a task cancelled by the ``replace`` duplicate policy."""

CANCEL_REASON_CLOSED = "because its toolset was closed"
"""``reason`` for a task cancelled by :meth:`AsyncToolset.aclose` (agent handoff, shutdown)."""

CANCEL_REASON_FROM_ROOM = "by the user, from the app"
"""``reason`` for a task cancelled through the room's ``asynctools.cancel_task`` RPC
(see :func:`~livekit.plugins.asynctools.publish_tasks`)."""

CANCEL_REASON_SESSION_ENDED = "because the session ended"
"""``reason`` for a task cancelled because its session closed (kept in the history only)."""

DUPLICATE_REJECT = """Same tool `{function_name}` is already running:
{running_fnc_calls}
If you want to cancel the existing one, call `cancel_task` with its call_id."""
"""Returned to the model by the ``reject`` duplicate policy. Placeholders:
:class:`DuplicateArgs`."""

DUPLICATE_CONFIRM = """Same tool `{function_name}` is already running:
{running_fnc_calls}
Re-call with `{confirm_param}` set to true to run a duplicate if the user confirms it is needed,
or if you want to cancel the existing one, call `cancel_task` with its call_id."""
"""Returned to the model by the ``confirm`` duplicate policy. Placeholders:
:class:`DuplicateArgs`."""

REPLY_INSTRUCTIONS = """New results arrived from background tool calls \
(call_ids: {pending_call_ids}).
Summarize these results to the user naturally. Do NOT repeat information you have already \
told the user."""
"""Instructions of the reply that speaks pending updates and results. Placeholders:
:class:`ReplyArgs`."""

REPLY_INTERRUPTED_NOTE = """Your previous reply about call_ids {call_ids} was interrupted: \
the user heard only "{heard}". Do not assume they heard the rest."""
"""Added to the instructions of a reply that gives interrupted results again.
Placeholders: :class:`ReceiptArgs`."""

NOT_HEARD_RECORD = """The results of background tool calls (call_ids: {call_ids}) were never \
told to the user: the session ended first."""
"""Recorded in the session history for results no reply delivered before the session
ended. Placeholders: :class:`ReceiptArgs` (``heard`` is empty)."""

NO_RUNNING_TASKS = "No background tasks are running."
"""What ``get_running_tasks`` answers when nothing runs in the session."""

CANCEL_REFUSED = """Task {call_id} cannot be cancelled: {reason}."""
"""What ``cancel_task`` answers for a call that may not be cancelled. Placeholders:
``call_id``, ``reason``."""

GET_RUNNING_TASKS_DESCRIPTION = """List the background tool calls that are still running, \
with their call_id, progress and whether the user heard their last update."""
"""Description of the ``get_running_tasks`` tool (see :class:`~.templates.Templates`)."""

CANCEL_TASK_DESCRIPTION = """Cancel a running background tool call by its call_id."""
"""Description of the ``cancel_task`` tool (see :class:`~.templates.Templates`)."""

CONFIRM_DUPLICATE_PARAM = "confirm_duplicate"
"""Boolean parameter added to a tool's schema under the ``confirm`` duplicate policy."""


class CallArgs(TypedDict):
    """Placeholders of every text about one call."""

    function_name: str
    call_id: str


class UpdateArgs(CallArgs):
    """Placeholders of the ``update`` text: the message and the structured progress.

    ``progress`` is the fraction done as a percentage string (``"40%"``), ``stage`` the
    stage name and ``seconds_left`` the estimate, each ``""`` when the update has none;
    ``details`` is all three as one parenthesis (``" (40% done, stage: search)"``) or ``""``.
    """

    message: str
    details: str
    progress: str
    stage: str
    seconds_left: str


class CancelledArgs(CallArgs):
    """Placeholders of the ``cancelled`` text."""

    reason: str


class TimedOutArgs(CallArgs):
    """Placeholders of the ``timed_out`` text; ``timeout`` in seconds."""

    timeout: float


class ElapsedArgs(CallArgs):
    """Placeholders of the ``still_running`` and ``filler`` texts; ``elapsed`` in seconds."""

    elapsed: float


class DuplicateArgs(TypedDict):
    """Placeholders of the ``duplicate_reject`` and ``duplicate_confirm`` texts."""

    function_name: str
    running_fnc_calls: str
    confirm_param: str


class ReplyArgs(TypedDict):
    """Placeholders of the ``reply`` instructions."""

    pending_call_ids: list[str]


class ReceiptArgs(TypedDict):
    """Placeholders of the ``reply_interrupted`` and ``not_heard`` texts."""

    call_ids: list[str]
    heard: str


_CALL = frozenset(CallArgs.__annotations__)
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "update": _CALL | {"message", "details", "progress", "stage", "seconds_left"},
    "finished_without_result": _CALL,
    "cancelled": _CALL | {"reason"},
    "timed_out": _CALL | {"timeout"},
    "still_running": _CALL | {"elapsed"},
    "filler": _CALL | {"elapsed"},
    "duplicate_reject": frozenset(DuplicateArgs.__annotations__),
    "duplicate_confirm": frozenset(DuplicateArgs.__annotations__),
    "reply": frozenset(ReplyArgs.__annotations__),
    "reply_interrupted": frozenset(ReceiptArgs.__annotations__),
    "not_heard": frozenset(ReceiptArgs.__annotations__),
    "cancel_refused": frozenset({"call_id", "reason"}),
    "ask": frozenset({"question"}),
    "get_running_tasks_description": frozenset(),
    "cancel_task_description": frozenset(),
}
"""The placeholders each text may use, by the text's name in
:class:`~livekit.plugins.asynctools.templates.Templates`."""

DEFAULTS: dict[str, str] = {
    "update": UPDATE_TEMPLATE,
    "finished_without_result": COMPLETED_WITHOUT_RESULT,
    "cancelled": CANCELLED_TEMPLATE,
    "timed_out": TIMED_OUT_TEMPLATE,
    "still_running": STILL_RUNNING_TEMPLATE,
    "filler": FILLER_INSTRUCTIONS,
    "duplicate_reject": DUPLICATE_REJECT,
    "duplicate_confirm": DUPLICATE_CONFIRM,
    "reply": REPLY_INSTRUCTIONS,
    "reply_interrupted": REPLY_INTERRUPTED_NOTE,
    "not_heard": NOT_HEARD_RECORD,
    "cancel_refused": CANCEL_REFUSED,
    "ask": ASK_INSTRUCTIONS,
    "get_running_tasks_description": GET_RUNNING_TASKS_DESCRIPTION,
    "cancel_task_description": CANCEL_TASK_DESCRIPTION,
}
"""The default of each text, by its name in
:class:`~livekit.plugins.asynctools.templates.Templates`."""
