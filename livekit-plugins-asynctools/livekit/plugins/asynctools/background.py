"""One tool call running in the background, from its first update to its end.

The life of a call, top to bottom:

1. ``BackgroundCall(...)`` validates the model's arguments (a bad argument is a
   ``ToolError`` the model sees, before anything runs) and builds the
   :class:`~livekit.plugins.asynctools.AsyncRunContext`.
2. :meth:`BackgroundCall.start` runs the tool in a task of its own and registers the
   call with its session.
3. :meth:`BackgroundCall.first_output` is what core's tool call returns: the first
   ``ctx.update()`` (the model answers the user at once), or the tool's result or error
   if it finished without one.
4. :meth:`BackgroundCall.report` turns each later update into a
   :class:`~livekit.plugins.asynctools.delivery.Delivery`, held until core has recorded
   the first output (the speech that answered it is done), so the chat keeps the order
   in which things happened.
5. :meth:`BackgroundCall._run` ends with exactly one record of how the call ended: its
   result, ``None`` included, its error, or its cancellation. It is recorded in the
   tool's own task step, so a last update and the result the tool returns right after it
   reach the same reply.

A session can run hundreds of calls at once, so a running call holds little besides the
tool's own frames and its task: no closures, the arguments only until the tool's
coroutine holds them, the first output's future only until core has received it, and
the list of held outputs only while an output waits.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from livekit.agents import llm, utils

from . import _compat
from .context import AsyncRunContext
from .delivery import Delivery
from .log import logger
from .templates import CANCEL_REASON_SESSION_ENDED, CANCELLED_TEMPLATE, COMPLETED_WITHOUT_RESULT

if TYPE_CHECKING:
    from .session_scope import SessionScope


class BackgroundCall:
    """A tool call that answers with its first update and keeps running.

    Creating one binds the model's arguments to the tool; :meth:`start` runs it.

    Args:
        tool: The user's tool (it takes an ``AsyncRunContext``).
        run_ctx: Core's run context of this call.
        raw_arguments: The model's arguments, already parsed from JSON.
        toolset_id: Id of the toolset that runs the call.
        scope: The session scope the call belongs to.

    Raises:
        ToolError: The arguments do not validate; core tells the model why.

    Attributes:
        function_call: The model's original call.
        toolset_id: Id of the :class:`~livekit.plugins.asynctools.AsyncToolset` running it.
        started_at: Wall-clock start time (``time.time()``).
        last_update: The last progress message sent as a string, if any.
    """

    __slots__ = (
        "function_call",
        "toolset_id",
        "started_at",
        "last_update",
        "_scope",
        "_ctx",
        "_tool_call",
        "_first_output",
        "_answer",
        "_updates",
        "_cancel_reason",
        "_task",
        "_held",
        "_done_callbacks",
    )

    def __init__(
        self,
        *,
        tool: llm.FunctionTool[Any, Any] | llm.RawFunctionTool[Any, Any],
        run_ctx: _compat.RunContext[Any],
        raw_arguments: dict[str, Any],
        toolset_id: str,
        scope: SessionScope,
    ) -> None:
        self.function_call = run_ctx.function_call
        self.toolset_id = toolset_id
        self.started_at = time.time()
        self.last_update: str | None = None
        self._scope = scope
        # what core's tool call waits for; None once received, and the answer is kept instead
        self._first_output: asyncio.Future[Any] | None = asyncio.get_running_loop().create_future()
        self._answer: Any = None
        self._updates = 0
        self._cancel_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        # outputs waiting for core to record the first one (see _deliver), while any wait
        self._held: list[_Outcome] | None = None
        # called by _run as the call ends (no closure per call on the task); None after that
        self._done_callbacks: tuple[Callable[[BackgroundCall], None], ...] | None = ()
        self._ctx: AsyncRunContext[Any] = AsyncRunContext(run_ctx=run_ctx, call=self)
        args, kwargs = _compat.bind_arguments(tool, raw_arguments, self._ctx)
        # the tool's coroutine, not started: it holds the arguments from now on
        self._tool_call: Awaitable[Any] = tool(*args, **kwargs)

    @property
    def call_id(self) -> str:
        """The model's call id, used to list and cancel the call."""
        return self.function_call.call_id

    @property
    def ctx(self) -> AsyncRunContext[Any]:
        """The run context the tool received."""
        return self._ctx

    @property
    def updates(self) -> int:
        """How many updates the tool has sent, the first one included."""
        return self._updates

    def start(self) -> None:
        """Run the tool in the background and register the call with its session."""
        assert self._task is None, "a call is started once"
        self._task = asyncio.create_task(self._run(), name=_task_name(self.function_call.name))
        # the tool's task acts as the tool call: ctx.speech_handle waits work inside it
        _compat.pass_through_task_info(self._task)
        self._scope.register(self)

    async def first_output(self) -> Any:
        """Wait for what the tool call answers now: the first update, result or error."""
        if self._first_output is None:
            return self._answer
        answer = await asyncio.shield(self._first_output)
        self._first_output, self._answer = None, answer
        return answer

    def report(self, message: Any) -> None:
        """Record an update from the tool (called by ``ctx.update()``)."""
        self._updates += 1
        self.last_update = message if isinstance(message, str) else None
        if self._answer_now(message):
            self.function_call.extra[_compat.NON_BLOCKING_FLAG] = True
            return
        entry = f"{self.call_id}_update_{self._updates - 1}"
        self._deliver(entry, message, is_result=False)
        self._scope.lifecycle.updated(entry_id=entry, call_id=self.call_id, message=str(message))

    async def cancel(self, reason: str) -> None:
        """Cancel the call and wait until it stopped; the model is told ``reason``."""
        if self._task is None or self._task.done():
            return
        self.cancel_now(reason)
        await utils.aio.cancel_and_wait(self._task)

    def cancel_now(self, reason: str) -> None:
        """Request cancellation without waiting for the call to stop."""
        if self._task is None or self._task.done():
            return
        self._cancel_reason = reason
        self._task.cancel()
        tool_call = self._tool_call
        if (
            inspect.iscoroutine(tool_call)
            and inspect.getcoroutinestate(tool_call) == inspect.CORO_CREATED
        ):
            # cancelled before its first step (a `replace` within one response): _run
            # will never run, so the call's end is recorded here
            tool_call.close()
            self._scope.unregister(self)
            self._end(cancelled=True)

    def done(self) -> bool:
        """Whether the call has ended."""
        # its end is recorded (callbacks run inside its last step), or its task is over
        return self._done_callbacks is None or (self._task is not None and self._task.done())

    def add_done_callback(self, callback: Callable[[BackgroundCall], None]) -> None:
        """Call ``callback(self)`` once the call has ended (after :meth:`start`)."""
        assert self._task is not None, "start() the call first"
        if self._done_callbacks is None:
            asyncio.get_running_loop().call_soon(callback, self)
        else:
            self._done_callbacks += (callback,)

    async def _run(self) -> None:
        # this frame stays suspended as long as the tool runs: it keeps no more than it needs
        try:
            output = await self._tool_call
        except asyncio.CancelledError:
            self._end(cancelled=True)
            raise
        except Exception as e:
            if self._answered():  # before that, core reports it like any tool error
                self._log_failure(e)
            output = e
        finally:
            self._scope.unregister(self)
        self._end(output)

    def _end(self, output: Any = None, *, cancelled: bool = False) -> None:
        try:
            if cancelled:
                self._record_cancellation()
            else:
                self._record_end(output)
        finally:
            callbacks, self._done_callbacks = self._done_callbacks or (), None
            for callback in callbacks:
                callback(self)

    def _answered(self) -> bool:
        return self._first_output is None or self._first_output.done()

    def _answer_now(self, answer: Any, *, error: bool = False) -> bool:
        """Give core's tool call its answer if it still waits for one; whether it did."""
        if self._answered():
            return False
        assert self._first_output is not None
        if error:
            self._first_output.set_exception(answer)
        else:
            self._first_output.set_result(answer)
        return True

    def _record_end(self, output: Any) -> None:
        if self._answer_now(output, error=isinstance(output, BaseException)):
            return  # finished without an update: it was an ordinary tool call after all

        if isinstance(output, BaseException):
            self._deliver(f"{self.call_id}_finished", None, exception=output)
            self._scope.lifecycle.ended(call_id=self.call_id, status="error", message=None)
            return
        if output is None:
            output = COMPLETED_WITHOUT_RESULT.format(
                function_name=self.function_call.name, call_id=self.call_id
            )
        self._deliver(f"{self.call_id}_finished", output)
        self._scope.lifecycle.ended(call_id=self.call_id, status="done", message=str(output))

    def _record_cancellation(self) -> None:
        reason = self._cancel_reason or CANCEL_REASON_SESSION_ENDED
        message = CANCELLED_TEMPLATE.format(
            function_name=self.function_call.name, call_id=self.call_id, reason=reason
        )
        if self._answer_now(message):
            return  # core was still waiting for the call's answer: it is the cancellation
        self._deliver(f"{self.call_id}_cancelled", message)
        self._scope.lifecycle.ended(call_id=self.call_id, status="cancelled", message=None)

    def _deliver(
        self,
        call_id: str,
        output: Any,
        *,
        exception: BaseException | None = None,
        is_result: bool = True,
    ) -> None:
        outcome = _Outcome(call_id, output, exception, is_result)
        if self._held is not None:
            self._held.append(outcome)
        elif self._ctx.speech_handle.done():
            self._submit(outcome)
        else:
            # core records the first output when the speech that answered it is done:
            # until then later outputs wait, so the chat keeps the order things happened in
            self._held = [outcome]
            self._ctx.speech_handle.add_done_callback(self._release_held)

    def _release_held(self, _: Any) -> None:
        held, self._held = self._held or [], None
        for outcome in held:
            self._submit(outcome)

    def _submit(self, outcome: _Outcome) -> None:
        # built now, not when the tool produced it: items are ordered by creation time
        fnc_call = llm.FunctionCall(
            call_id=outcome.call_id,
            name=self.function_call.name,
            arguments=self.function_call.arguments,
            # validation copies the dict: the item never shares it with the model's call
            extra=self.function_call.extra,
        )
        out = _compat.make_tool_output(
            fnc_call=fnc_call, output=outcome.output, exception=outcome.exception
        )
        if out.fnc_call_out is None:  # an output core refuses (e.g. several agents)
            out = _compat.make_tool_output(
                fnc_call=fnc_call, output=None, exception=llm.ToolError("invalid tool output")
            )
        assert out.fnc_call_out is not None
        self._scope.delivery.submit(
            Delivery(
                items=[out.fnc_call, out.fnc_call_out],
                call_id=outcome.call_id,
                is_result=outcome.is_result,
            )
        )

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


def _task_name(function_name: str) -> str:
    # one string per tool, shared by all its running calls
    return sys.intern(f"asynctools_{function_name}")


class _Outcome(NamedTuple):
    call_id: str
    output: Any
    exception: BaseException | None
    is_result: bool
