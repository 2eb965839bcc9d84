"""What a background call sends after its first answer: later outputs and its end record.

:class:`CallOutputs` is the half of :class:`~livekit.plugins.asynctools.background.BackgroundCall`
that turns what the tool produced into the session's deliveries, in the order it happened:

1. :meth:`CallOutputs._deliver` queues an output (a later update, or the record of how
   the call ended) until core has recorded the call's first output, then submits it.
2. :meth:`CallOutputs._submit` builds the function call and output pair under the
   output's own id (``<id>_update_<n>``, ``<id>_finished``...) and hands it to the
   session's :class:`~livekit.plugins.asynctools.delivery.DeliveryCoordinator`.
3. :meth:`CallOutputs._end` runs once as the call ends and writes exactly one record of
   how: its result, ``None`` included, its error, its cancellation or its timeout.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from livekit.agents import Agent, llm

from . import _compat
from .context import AsyncRunContext, BackgroundResult
from .default_texts import CANCEL_REASON_SESSION_ENDED
from .delivery import Delivery
from .events import DeliveryMode
from .log import logger

if TYPE_CHECKING:
    from .background import BackgroundCall
    from .events import TaskEvents, TaskStatus
    from .policy import EffectivePolicy, Filler
    from .session_scope import SessionScope


class CallOutputs:
    """Later outputs and the end record of a background call.

    A base of :class:`~livekit.plugins.asynctools.background.BackgroundCall`: the four
    slots are the state only this half assigns, the other names are the call's.
    """

    __slots__ = ("_last_heard", "_timers", "_held", "_done_callbacks")

    function_call: llm.FunctionCall
    policy: EffectivePolicy
    filler: Filler | None
    _toolset_events: TaskEvents | None
    _last_heard: bool | None
    _timers: tuple[asyncio.TimerHandle, ...]
    _timed_out: bool
    _scope: SessionScope
    _ctx: AsyncRunContext[Any]
    _cancel_reason: str | None
    _held: list[_Outcome] | None
    _done_callbacks: DoneCallbacks

    if TYPE_CHECKING:

        @property
        def call_id(self) -> str: ...

        def text(self, name: str, **args: Any) -> str: ...

        def _answer_now(
            self, answer: Any, *, error: bool = False, mode: DeliveryMode = "idle"
        ) -> bool: ...

    def _end(self, output: Any = None, *, cancelled: bool = False) -> None:
        call: BackgroundCall = self  # type: ignore[assignment]  # this half of one
        for timer in self._timers:
            timer.cancel()
        self._timers = ()
        try:
            if self.filler is not None:
                self._scope.delivery.fillers.forget(call)
            if cancelled:
                self._record_cancellation()
            else:
                self._record_end(output)
        finally:
            if self._held is None:
                self._scope.delivery.floor.done_with()
            callbacks, self._done_callbacks = self._done_callbacks, None
            for callback in done_callbacks(callbacks):
                callback(call)

    def _record_end(self, output: Any) -> None:
        mode: DeliveryMode = "idle"
        if isinstance(output, BackgroundResult):
            output, mode = output.output, output.delivery
        is_error = isinstance(output, BaseException)
        call_id = self.function_call.call_id
        if self._answer_now(output, error=is_error, mode=mode):
            # finished without an update: it was an ordinary tool call after all
            self._ended("error" if is_error else "done", call_id, None, output)
            return

        record = f"{call_id}_finished"
        if is_error:
            self._deliver(record, None, exception=output, mode=mode)
            self._ended("error", record, None)
            return
        if output is None or isinstance(output, Agent):
            # the model must learn the task is over, even when it says nothing more
            said = self.text(
                "finished_without_result",
                function_name=self.function_call.name,
                call_id=call_id,
            )
            output = said if output is None else (output, said)
        self._deliver(record, output, mode=mode)
        self._ended("done", record, str(output), output)

    def _record_cancellation(self) -> None:
        name, call_id = self.function_call.name, self.call_id
        if self._timed_out:
            status: TaskStatus = "timed_out"
            message = self.text(
                "timed_out", function_name=name, call_id=call_id, timeout=self.policy.timeout
            )
        else:
            status = "cancelled"
            reason = self._cancel_reason or CANCEL_REASON_SESSION_ENDED
            message = self.text("cancelled", function_name=name, call_id=call_id, reason=reason)
        if self._answer_now(message):
            # core was still waiting for the call's answer: it is the record
            self._ended(status, call_id, message)
            return
        record = f"{call_id}_{status}"
        self._deliver(record, message)
        self._ended(status, record, message)

    def _ended(
        self, status: TaskStatus, record_id: str, message: str | None, value: Any = None
    ) -> None:
        self._scope.lifecycle.ended(
            self._toolset_events,
            call_id=self.function_call.call_id,
            status=status,
            record_id=record_id,
            message=message,
            value=None if status == "error" else value,
        )

    def _deliver(
        self,
        call_id: str,
        output: Any,
        *,
        exception: BaseException | None = None,
        is_result: bool = True,
        mode: DeliveryMode = "idle",
    ) -> None:
        if self._held is None and self._ctx.speech_handle.done():
            self._submit(call_id, output, exception, is_result, mode)
            return
        outcome = _Outcome(call_id, output, exception, is_result, mode)
        if self._held is not None:
            self._held.append(outcome)
        else:
            # core records the first output when the speech that answered it is done:
            # until then later outputs wait, so the chat keeps the order things happened in
            self._held = [outcome]
            self._ctx.speech_handle.add_done_callback(self._release_held)

    def _release_held(self, _: Any) -> None:
        held, self._held = self._held or [], None
        for outcome in held:
            self._submit(*outcome)
        if self._done_callbacks is None:  # ended while these waited: _end kept the floor
            self._scope.delivery.floor.done_with()

    def _submit(
        self,
        call_id: str,
        output: Any,
        exception: BaseException | None,
        is_result: bool,
        mode: DeliveryMode,
    ) -> None:
        # built now, not when the tool produced it: items are ordered by creation time
        fnc_call = llm.FunctionCall(
            call_id=call_id,
            name=self.function_call.name,
            arguments=self.function_call.arguments,
            # validation copies the dict: the item never shares it with the model's call
            extra=self.function_call.extra,
        )
        out = _compat.make_tool_output(fnc_call=fnc_call, output=output, exception=exception)
        if out.fnc_call_out is None:  # an output core refuses (e.g. several agents)
            out = _compat.make_tool_output(
                fnc_call=fnc_call, output=None, exception=llm.ToolError("invalid tool output")
            )
        assert out.fnc_call_out is not None
        self._scope.delivery.submit(
            Delivery(
                items=[out.fnc_call, out.fnc_call_out],
                call_id=call_id,
                is_result=is_result,
                mode=mode,
                call=self,  # type: ignore[arg-type]  # BackgroundCall's half
                handoff=out.agent_task,
            )
        )

    def heard(self, heard: bool) -> None:
        """Record whether the reply that gave this call's last update was heard in full."""
        self._last_heard = heard

    def _log_failure(self, e: Exception) -> None:
        extra = {"function": self.function_call.name, "call_id": self.call_id}
        if isinstance(e, llm.ToolError):
            logger.warning(
                "background tool raised a ToolError", extra={**extra, "lk.pii.error": e.message}
            )
        else:
            logger.error(
                "background tool raised an exception",
                extra={
                    **extra,
                    "exception_type": type(e).__name__,
                    "lk.pii.traceback": "".join(traceback.format_exception(e)),
                },
            )


DoneCallback = Callable[["BackgroundCall"], None]
DoneCallbacks = DoneCallback | tuple[DoneCallback, ...] | None
"""A call's done callbacks: one on its own (most calls have one), several in a tuple, or
None once the call has ended."""


def done_callbacks(callbacks: DoneCallbacks) -> tuple[DoneCallback, ...]:
    """The callbacks as a tuple."""
    if callbacks is None:
        return ()
    return callbacks if isinstance(callbacks, tuple) else (callbacks,)


class _Outcome(NamedTuple):
    call_id: str
    output: Any
    exception: BaseException | None
    is_result: bool
    mode: DeliveryMode
