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
   :class:`~livekit.plugins.asynctools.delivery.Delivery` (``_deliver`` in
   :mod:`~livekit.plugins.asynctools.outputs`), held until core has recorded the first
   output (the speech that answered it is done), so the chat keeps the order in which
   things happened.
5. The tool's last step ends with exactly one record of how the call ended (``_end``
   in :mod:`~livekit.plugins.asynctools.outputs`): its result, ``None`` included, its
   error, its cancellation, or its timeout. It is recorded in the tool's own task step
   (the task runs the tool's coroutine through
   :class:`~livekit.plugins.asynctools.tool_steps.ToolSteps`), so a last update and the
   result the tool returns right after it reach the same reply.

Each output carries its delivery mode (``idle``, ``silent``, ``now``) to the session's
:class:`~livekit.plugins.asynctools.delivery.DeliveryCoordinator`; every text the model
gets is rendered from the most specific template set for the call (:meth:`text`).

A session can run hundreds of calls at once, so a running call holds little besides the
tool's own frames and its task: no coroutine frame of its own around the tool's, no
closures, the arguments only until the tool's coroutine holds them, the first output's
future only until core has received it (and not the answer after that), and the list of
held outputs only while an output waits.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from livekit.agents import llm

from . import _compat
from .context import AsyncRunContext
from .events import NO_PROGRESS, DeliveryMode, Progress
from .log import logger
from .outputs import CallOutputs, DoneCallbacks, _Outcome, done_callbacks
from .templates import text_for
from .tool_steps import ToolSteps

if TYPE_CHECKING:
    from .events import TaskEvents
    from .policy import EffectivePolicy, Filler
    from .session_scope import SessionScope

CANCEL_WAIT = 2.0
"""Seconds :meth:`BackgroundCall.cancel` waits for a cancelled tool to stop (closing a
toolset or a session, ``cancel_task``, the ``replace`` policy). A tool that swallows its
``CancelledError`` and runs on is logged with a warning and left to finish on its own."""


class BackgroundCall(CallOutputs):
    """A tool call that answers with its first update and keeps running.

    Creating one binds the model's arguments to the tool; :meth:`start` runs it.

    Args:
        tool: The user's tool (it takes an ``AsyncRunContext``).
        run_ctx: Core's run context of this call.
        raw_arguments: The model's arguments, already parsed from JSON.
        toolset_id: Id of the toolset that runs the call.
        scope: The session scope the call belongs to.
        policy: The tool's effective policy (timeouts, filler, templates...).
        toolset_events: The toolset's event emitter, if it has one.

    Raises:
        ToolError: The arguments do not validate; core tells the model why.

    Attributes:
        function_call: The model's original call.
        toolset_id: Id of the :class:`~livekit.plugins.asynctools.AsyncToolset` running it.
        started_at: Wall-clock start time (``time.time()``).
        last_update: The last progress message sent as a string, if any.
        progress: The structured progress of the last update that gave any.
        policy: The tool's effective policy.
    """

    __slots__ = (
        "function_call",
        "toolset_id",
        "started_at",
        "last_update",
        "progress",
        "policy",
        "_toolset_events",
        "filler",
        "filler_count",
        "quiet_since",
        "_timed_out",
        "_scope",
        "_ctx",
        "_tool_call",
        "_first_output",
        "_updates",
        "_cancel_reason",
        "_task",
    )

    def __init__(
        self,
        *,
        tool: llm.FunctionTool[Any, Any] | llm.RawFunctionTool[Any, Any],
        run_ctx: _compat.RunContext[Any],
        raw_arguments: dict[str, Any],
        toolset_id: str,
        scope: SessionScope,
        policy: EffectivePolicy,
        toolset_events: TaskEvents | None = None,
    ) -> None:
        self.function_call = run_ctx.function_call
        self.toolset_id = toolset_id
        self.started_at = time.time()
        self.last_update: str | None = None
        self.progress: Progress = NO_PROGRESS
        self.policy = policy
        self._toolset_events = toolset_events
        # the filler schedule's state for this call (see fillers.py)
        self.filler: Filler | None = None
        self.filler_count = 0
        self.quiet_since = 0.0
        # whether the user heard the last update after the first: None until it is known
        self._last_heard: bool | None = None
        self._timers: tuple[asyncio.TimerHandle, ...] = ()
        self._timed_out = False
        self._scope = scope
        # what core's tool call waits for; None once core has received it
        self._first_output: asyncio.Future[Any] | None = asyncio.get_running_loop().create_future()
        self._updates = 0
        self._cancel_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        # outputs waiting for core to record the first one (see _deliver), while any wait
        self._held: list[_Outcome] | None = None
        # called as the call ends (no closure per call on the task); None after that
        self._done_callbacks: DoneCallbacks = ()
        self._ctx: AsyncRunContext[Any] = AsyncRunContext(run_ctx=run_ctx, call=self)
        args, kwargs = _compat.bind_arguments(tool, raw_arguments, self._ctx)
        # the tool's coroutine, not started: it holds the arguments from now on
        tool_call = tool(*args, **kwargs)
        if not isinstance(tool_call, CoroutineType):  # any other awaitable, or none (an error then)
            tool_call = _awaited(tool_call)
        self._tool_call: CoroutineType[Any, Any, Any] = tool_call

    @property
    def call_id(self) -> str:
        """The model's call id, used to list and cancel the call."""
        return self.function_call.call_id

    @property
    def scope(self) -> SessionScope:
        """The session scope the call belongs to."""
        return self._scope

    @property
    def toolset_events(self) -> TaskEvents | None:
        """The lifecycle events of the toolset running the call."""
        return self._toolset_events

    @property
    def ctx(self) -> AsyncRunContext[Any]:
        """The run context the tool received."""
        return self._ctx

    @property
    def updates(self) -> int:
        """How many updates the tool has sent, the first one included."""
        return self._updates

    @property
    def last_update_heard(self) -> bool | None:
        """Whether the user heard the last update in full; None while that is not known.

        A silent update is never heard; one whose reply was interrupted was not heard.
        """
        if self._updates == 1 and self._last_heard is None:
            # the first update is heard with the speech that answered the call
            speech = self._ctx.speech_handle
            return (not speech.interrupted) if speech.done() else None
        return self._last_heard

    def start(self) -> None:
        """Run the tool in the background and register the call with its session."""
        assert self._task is None, "a call is started once"
        self._task = asyncio.create_task(ToolSteps(self), name=_task_name(self.function_call.name))
        # the tool's task acts as the tool call: ctx.speech_handle waits work inside it
        _compat.pass_through_task_info(self._task)
        self._scope.register(self)
        # the session's floor watches the conversation while the call runs, and until its
        # last outputs are submitted (see _end and _release_held)
        self._scope.delivery.floor.use()
        policy = self.policy
        if policy.timeout is not None or policy.soft_deadline is not None:
            loop = asyncio.get_running_loop()
            timers = []
            if policy.timeout is not None:
                timers.append(loop.call_later(policy.timeout, self._time_out))
            if policy.soft_deadline is not None:
                timers.append(loop.call_later(policy.soft_deadline, self._soft_deadline))
            self._timers = tuple(timers)
        if policy.filler is not None:
            self._scope.delivery.fillers.track(self, policy.filler)
        fnc_call = self.function_call
        self._scope.lifecycle.started(
            self._toolset_events,
            call_id=fnc_call.call_id,
            function_name=fnc_call.name,
            toolset_id=self.toolset_id,
            arguments=fnc_call.arguments,
            timeout=policy.timeout,
        )

    def text(self, name: str, **args: Any) -> str:
        """The text ``name`` for this call, from the most specific template set.

        Call, tool, toolset, current agent, session, then the module default.
        """
        return text_for(
            name,
            args,
            self._ctx.session,
            ctx=self._ctx,
            tool=self.policy.tool_templates,
            toolset=self.policy.toolset_templates,
        )

    async def first_output(self) -> Any:
        """Wait for what the tool call answers now: the first update, result or error.

        Awaited once, by core's tool call (the answer is not kept after that).
        """
        waiting = self._first_output
        assert waiting is not None, "the first output is awaited once"
        try:
            # awaited directly, not through asyncio.shield (one more future and one more
            # event-loop step on every call's dispatch); a cancellation is undone below
            answer = await waiting
        except asyncio.CancelledError:
            if waiting.cancelled() and self._first_output is waiting:
                # core gave up on the answer (its tool call was cancelled): the call still
                # owes one, so its end is recorded as if core were still waiting
                self._first_output = owed = asyncio.get_running_loop().create_future()
                owed.add_done_callback(_retrieve)  # nobody awaits it: no "never retrieved"
            raise
        self._first_output = None
        return answer

    def report(
        self,
        message: Any,
        *,
        raw_message: str,
        delivery: DeliveryMode = "idle",
        progress: Progress | None = None,
    ) -> None:
        """Record an update from the tool (called by ``ctx.update()``).

        Args:
            message: What the model gets (already rendered through the update template).
            raw_message: The message as the tool gave it, for events and listings.
            delivery: How it reaches the user.
            progress: Its structured progress; fields it leaves unset keep their values.

        Raises:
            RuntimeError: The call has already ended.
        """
        if self.done() or self._task is None:
            raise RuntimeError(
                f"ctx.update() after the call {self.call_id} of "
                f"`{self.function_call.name}` ended: nothing was delivered"
            )
        self._updates += 1
        self.last_update = raw_message
        if progress is not None and progress is not NO_PROGRESS and progress != NO_PROGRESS:
            self.progress = self.progress.merged(progress)
        first = not self._answered()
        call_id = self.function_call.call_id
        entry = call_id if first else f"{call_id}_update_{self._updates - 1}"
        self._scope.lifecycle.updated(
            self._toolset_events,
            call_id=call_id,
            update_id=entry,
            message=raw_message,
            delivery=delivery,
            progress=self.progress,
        )
        if delivery != "silent":
            self._scope.delivery.fillers.spoke_about(self)
        if first:
            answer, record_apart = message, False
            if delivery == "silent":
                self._last_heard = False
                answer, record_apart = _compat.silent_tool_answer(message)
            self._answer_now(answer, mode=delivery)
            self.function_call.extra[_compat.NON_BLOCKING_FLAG] = True
            if record_apart:
                self._deliver(f"{call_id}_update_0", message, is_result=False, mode="silent")
            return
        self._last_heard = False if delivery == "silent" else None
        self._deliver(entry, message, is_result=False, mode=delivery)

    async def cancel(self, reason: str) -> None:
        """Cancel the call and wait until it stopped, at most :data:`CANCEL_WAIT` seconds;
        the model is told ``reason``."""
        if self._task is None or self._task.done():
            return
        self.cancel_now(reason)
        done, _ = await asyncio.wait([self._task], timeout=CANCEL_WAIT)
        if not done:
            logger.warning(
                "background tool ignored its cancellation, no longer waiting for it",
                extra={
                    "function": self.function_call.name,
                    "call_id": self.call_id,
                    "waited": CANCEL_WAIT,
                },
            )

    def cancel_now(self, reason: str) -> None:
        """Request cancellation without waiting for the call to stop."""
        if self._task is None or self._task.done() or self._done_callbacks is None:
            return
        self._cancel_reason = reason
        self._task.cancel()
        tool_call = self._tool_call
        if (
            inspect.iscoroutine(tool_call)
            and inspect.getcoroutinestate(tool_call) == inspect.CORO_CREATED
        ):
            # cancelled before its first step (a `replace` within one response): the tool
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
        callbacks = self._done_callbacks
        if callbacks is None:
            asyncio.get_running_loop().call_soon(callback, self)
        elif callbacks == ():
            self._done_callbacks = callback  # most calls have one: no tuple for it
        else:
            self._done_callbacks = (*done_callbacks(callbacks), callback)

    def _time_out(self) -> None:
        if self._task is None or self._task.done() or self._done_callbacks is None:
            return
        logger.info(
            "background tool call timed out",
            extra={"function": self.function_call.name, "call_id": self.call_id},
        )
        self._timed_out = True
        self.cancel_now("")

    def _soft_deadline(self) -> None:
        if self._task is None or self._task.done() or not self._answered():
            return
        elapsed = time.time() - self.started_at
        message = self.text(
            "still_running",
            function_name=self.function_call.name,
            call_id=self.call_id,
            elapsed=elapsed,
        )
        self.report(message, raw_message=f"still running after {elapsed:.0f} s")

    def _answered(self) -> bool:
        return self._first_output is None or self._first_output.done()

    def _answer_now(self, answer: Any, *, error: bool = False, mode: DeliveryMode = "idle") -> bool:
        """Give core's tool call its answer if it still waits for one; whether it did.

        A ``now`` answer interrupts the model where the provider schedules the call's
        response itself (Gemini Live under ``NON_BLOCKING``).
        """
        if self._answered():
            return False
        waiting = self._first_output
        assert waiting is not None
        if error:
            waiting.set_exception(answer)
        else:
            waiting.set_result(answer)
        if mode == "now":
            _compat.interrupt_with_response(self._ctx.session, self._ctx.speech_handle)
        return True


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _task_name(function_name: str) -> str:
    # one string per tool, shared by all its running calls
    return sys.intern(f"asynctools_{function_name}")
