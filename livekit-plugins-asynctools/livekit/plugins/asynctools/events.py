"""Lifecycle events of background calls, with their structured progress.

Listen per toolset (``toolset.events``) or per session (:func:`task_events`); both
emit the same typed events, on every supported livekit-agents release:

==================== ======================= ==========================================
event name           payload                 when
==================== ======================= ==========================================
``task_started``     :class:`TaskStarted`    the call started running
``task_updated``     :class:`TaskUpdated`    ``ctx.update()`` (the first one included)
``reply_scheduled``  :class:`ReplyEvent`     a deferred reply was asked for
``reply_heard``      :class:`ReplyEvent`     it played out in full
``reply_interrupted`` :class:`ReplyEvent`    the user cut it off (it will be given again)
``reply_not_given``  :class:`ReplyEvent`     the session ended before it was given
``task_ended``       :class:`TaskEnded`      done, error, cancelled or timed_out
==================== ======================= ==========================================

On livekit-agents 1.6+ core's own ``tool_execution_updated`` event is kept honest as
well (see ``_compat.ToolLifecycle``).

Example::

    from livekit.plugins.asynctools import task_events

    @task_events(session).on("task_updated")
    def on_progress(ev: TaskUpdated) -> None:
        print(ev.call_id, ev.progress.fraction, ev.progress.stage)
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from livekit.agents import utils

from . import _compat

if TYPE_CHECKING:
    from collections.abc import Sequence

    from livekit.agents import AgentSession

    from .delivery import Delivery

DeliveryMode = Literal["idle", "silent", "now"]
"""How an update or a result reaches the user:

- ``idle`` (default): spoken when the agent and the user are both idle.
- ``silent``: recorded for the model, never spoken; it never starts a reply, and the
  model sees it in its next one. A silent first update releases the turn without the
  model speaking.
- ``now``: spoken as soon as the user is not speaking, cutting off the agent's current
  speech when that speech allows interruptions; never cuts off the user.
"""

DELIVERY_MODES: tuple[DeliveryMode, ...] = ("idle", "silent", "now")

TaskStatus = Literal["done", "error", "cancelled", "timed_out"]
"""How a background call ended."""

TaskEventName = Literal[
    "task_started",
    "task_updated",
    "reply_scheduled",
    "reply_heard",
    "reply_interrupted",
    "reply_not_given",
    "task_ended",
]


@dataclass(frozen=True, slots=True)
class Progress:
    """Structured progress of a call, as its last update gave it (None: not given).

    Attributes:
        fraction: Fraction done, from 0 to 1.
        stage: Name of the current stage.
        seconds_left: Estimated seconds until the call is done.
    """

    fraction: float | None = None
    stage: str | None = None
    seconds_left: float | None = None

    @staticmethod
    def checked(*, fraction: Any, stage: Any, seconds_left: Any) -> Progress:
        """A progress from ``ctx.update()`` arguments (None where not given).

        Raises:
            ValueError: ``fraction`` is not a number from 0 to 1, ``stage`` is not a
                non-empty string, or ``seconds_left`` is not a number >= 0.
        """
        if fraction is not None and not (_real(fraction) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"progress must be a number from 0 to 1, got {fraction!r}")
        if stage is not None and not (isinstance(stage, str) and stage.strip()):
            raise ValueError(f"stage must be a non-empty string, got {stage!r}")
        if seconds_left is not None and not (_real(seconds_left) and seconds_left >= 0):
            raise ValueError(f"seconds_left must be a number >= 0, got {seconds_left!r}")
        return Progress(
            fraction=None if fraction is None else float(fraction),
            stage=stage,
            seconds_left=None if seconds_left is None else float(seconds_left),
        )

    def merged(self, new: Progress) -> Progress:
        """This progress, with what ``new`` sets replacing it field by field."""
        if new.fraction is not None and new.stage is not None and new.seconds_left is not None:
            return new  # it sets every field (the usual case): nothing of this one is left
        return Progress(
            fraction=new.fraction if new.fraction is not None else self.fraction,
            stage=new.stage if new.stage is not None else self.stage,
            seconds_left=new.seconds_left if new.seconds_left is not None else self.seconds_left,
        )

    def describe(self) -> str:
        """A short text for the model: ``" (40% done, stage: booking, about 12 s left)"``."""
        parts = []
        if self.fraction is not None:
            parts.append(f"{self.fraction:.0%} done")
        if self.stage is not None:
            parts.append(f"stage: {self.stage}")
        if self.seconds_left is not None:
            parts.append(f"about {self.seconds_left:.0f} s left")
        return f" ({', '.join(parts)})" if parts else ""

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, for JSON."""
        return {
            k: v
            for k, v in (
                ("fraction", self.fraction),
                ("stage", self.stage),
                ("seconds_left", self.seconds_left),
            )
            if v is not None
        }


NO_PROGRESS = Progress()


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """A background call started running.

    Attributes:
        call_id: The model's call id.
        function_name: The tool's name.
        toolset_id: Id of the toolset running it.
        arguments: The model's arguments, as JSON text (may hold personal data).
        timeout: Seconds the call may run before it is stopped; None for no limit.
    """

    call_id: str
    function_name: str
    toolset_id: str
    arguments: str
    timeout: float | None = None
    type: Literal["task_started"] = "task_started"


@dataclass(frozen=True, slots=True)
class TaskUpdated:
    """A call reported progress with ``ctx.update()``.

    Attributes:
        call_id: The model's call id.
        update_id: The output's call id: ``call_id`` for the first update (the tool's
            answer), ``<call_id>_update_<n>`` after.
        message: The message as the tool gave it, before any template.
        delivery: How it reaches the user.
        progress: Its structured progress.
    """

    call_id: str
    update_id: str
    message: str
    delivery: DeliveryMode
    progress: Progress = NO_PROGRESS
    type: Literal["task_updated"] = "task_updated"


@dataclass(frozen=True, slots=True)
class ReplyEvent:
    """A deferred reply covering one or more updates and results.

    Attributes:
        status: ``scheduled``, ``heard``, ``interrupted`` or ``not_given``.
        update_ids: The outputs it covers (``<call_id>_update_<n>``, ``_finished``...).
        speech_id: Id of the reply's speech handle; empty when it was never given.
        heard: For ``interrupted``, the part the user heard.
    """

    status: Literal["scheduled", "heard", "interrupted", "not_given"]
    update_ids: list[str]
    speech_id: str = ""
    heard: str = ""
    type: Literal["reply"] = "reply"


@dataclass(frozen=True, slots=True)
class TaskEnded:
    """A call ended, with exactly one record of how.

    Attributes:
        call_id: The model's call id.
        status: ``done``, ``error``, ``cancelled`` or ``timed_out``.
        record_id: The call id of the record in the chat (``<call_id>_finished``,
            ``_cancelled``, ``_timed_out``), or ``call_id`` when the call ended before
            its first update and core recorded it as an ordinary tool call.
        message: The result or record text; None for an error (its text is not shown).
        value: For ``done``, what the tool returned (may hold personal data); else None.
    """

    call_id: str
    status: TaskStatus
    record_id: str
    message: str | None = None
    value: Any = None
    type: Literal["task_ended"] = "task_ended"


class TaskEvents(utils.EventEmitter[TaskEventName]):
    """An emitter of background-call lifecycle events (see the module's table).

    Example::

        toolset.events.on("task_ended", lambda ev: print(ev.call_id, ev.status))
    """


_session_events: weakref.WeakKeyDictionary[AgentSession[Any], TaskEvents] = (
    weakref.WeakKeyDictionary()
)


def task_events(session: AgentSession[Any]) -> TaskEvents:
    """The lifecycle events of every background call of ``session``, from any toolset.

    Example::

        task_events(session).on("reply_interrupted", lambda ev: print(ev.update_ids))
    """
    events = _session_events.get(session)
    if events is None:
        events = _session_events[session] = TaskEvents()
        # a listener that refers to the session (most do) would keep this entry, and so the
        # session and everything it holds, alive for good: the entry goes when it closes
        session.once("close", functools.partial(_forget, weakref.ref(session)))
    return events


def _forget(session: weakref.ref[AgentSession[Any]], _: Any) -> None:
    if (closed := session()) is not None:
        _session_events.pop(closed, None)


_REPLY_EVENTS: dict[str, TaskEventName] = {
    "scheduled": "reply_scheduled",
    "heard": "reply_heard",
    "interrupted": "reply_interrupted",
    "not_given": "reply_not_given",
}


@dataclass(slots=True)
class Lifecycle:
    """Reports one session's call lifecycle to the toolsets' and the session's listeners
    and, on 1.6+, to core's ``tool_execution_updated``."""

    session_events: TaskEvents
    core: _compat.ToolLifecycle | None
    """Core's tool events, on releases that have them (1.6+)."""

    @staticmethod
    def of(session: AgentSession[Any]) -> Lifecycle:
        return Lifecycle(session_events=task_events(session), core=_compat.tool_lifecycle(session))

    def emit(self, name: TaskEventName, ev: Any, toolset_events: TaskEvents | None) -> None:
        """Send ``ev`` to the session's listeners and the toolset's."""
        self.session_events.emit(name, ev)
        if toolset_events is not None:
            toolset_events.emit(name, ev)

    def listened(self, name: TaskEventName, toolset_events: TaskEvents | None) -> bool:
        """Whether the session's or the toolset's emitter may have a listener of ``name``:
        the events of every call are built only then.

        Read from ``_events``, the registry of livekit-rtc's ``EventEmitter``, keyed by
        event name on every supported release (``off()`` may leave an empty entry: an event
        built for nobody, as before); read in place, as this runs on every call's path,
        where each further function call costs a few microseconds of cold cache.
        """
        return name in self.session_events._events or (
            toolset_events is not None and name in toolset_events._events
        )

    def started(
        self,
        toolset_events: TaskEvents | None,
        *,
        call_id: str,
        function_name: str,
        toolset_id: str,
        arguments: str,
        timeout: float | None,
    ) -> None:
        """A call started: :class:`TaskStarted`, built only if anyone listens."""
        if self.listened("task_started", toolset_events):
            ev = TaskStarted(
                call_id=call_id,
                function_name=function_name,
                toolset_id=toolset_id,
                arguments=arguments,
                timeout=timeout,
            )
            self.emit("task_started", ev, toolset_events)

    def updated(
        self,
        toolset_events: TaskEvents | None,
        *,
        call_id: str,
        update_id: str,
        message: str,
        delivery: DeliveryMode,
        progress: Progress,
    ) -> None:
        """A call sent an update: :class:`TaskUpdated`, built only if anyone listens; core
        is told of every update after the first (it reported the first one itself)."""
        if self.listened("task_updated", toolset_events):
            ev = TaskUpdated(
                call_id=call_id,
                update_id=update_id,
                message=message,
                delivery=delivery,
                progress=progress,
            )
            self.emit("task_updated", ev, toolset_events)
        if update_id != call_id and self.core is not None:
            self.core.updated(
                entry_id=update_id,
                call_id=call_id,
                message=message,
                silent=delivery == "silent",
            )

    def reply(
        self,
        status: Literal["scheduled", "heard", "interrupted", "not_given"],
        batch: Sequence[Delivery],
        *,
        speech_id: str = "",
        heard: str = "",
    ) -> None:
        """A deferred reply's progress, for the deliveries of ``batch``: :class:`ReplyEvent`,
        built only if anyone listens; core is told where it has an event for it (1.8)."""
        name = _REPLY_EVENTS[status]
        listening: list[TaskEvents] = []
        if name in self.session_events._events:  # as in listened()
            listening.append(self.session_events)
        for d in batch:
            events = d.call.toolset_events if d.call is not None else None
            if events is not None and events not in listening and name in events._events:
                listening.append(events)
        if not listening and self.core is None:
            return
        update_ids = [d.call_id for d in batch]
        if listening:
            ev = ReplyEvent(status, update_ids, speech_id=speech_id, heard=heard)
            for events in listening:
                events.emit(name, ev)
        if self.core is not None:
            self.core.reply(update_ids=update_ids, status=status, speech_id=speech_id)

    def ended(
        self,
        toolset_events: TaskEvents | None,
        *,
        call_id: str,
        status: TaskStatus,
        record_id: str,
        message: str | None,
        value: Any,
    ) -> None:
        """A call ended: :class:`TaskEnded`, built only if anyone listens; core is told
        unless it saw the call end itself (before the call's first update)."""
        if self.listened("task_ended", toolset_events):
            ev = TaskEnded(call_id, status, record_id, message=message, value=value)
            self.emit("task_ended", ev, toolset_events)
        if record_id != call_id and self.core is not None:
            self.core.ended(
                call_id=call_id,
                status="cancelled" if status == "timed_out" else status,
                message=message,
            )


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
