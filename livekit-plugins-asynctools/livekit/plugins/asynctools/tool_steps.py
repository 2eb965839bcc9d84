"""The tool's coroutine as a background call's task runs it.

:class:`ToolSteps` passes each step to the tool and, in the step in which the tool stops,
records how the call ended (its result, error or cancellation) through the call's
``_end``: a last update and the result the tool returns right after it reach the same
reply. It does what an ``async def`` around ``await tool_call`` would, without keeping a
coroutine frame of its own for as long as the tool runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .background import BackgroundCall


class ToolSteps(Coroutine[Any, Any, None]):
    """The tool's coroutine as the call's task runs it: each step goes to the tool, and
    the step in which the tool stops records how the call ended.

    What an ``async def`` around ``await tool_call`` would do, without a coroutine frame
    of its own for as long as the tool runs (232 bytes a running call on CPython 3.11);
    its task shows the tool's own frames (``cr_frame``, ``cr_await``).
    """

    __slots__ = ("_call",)

    def __init__(self, call: BackgroundCall) -> None:
        self._call = call

    def send(self, value: Any, error: tuple[Any, ...] | None = None) -> Any:
        # one step: ``value`` sent to the tool, or ``error`` thrown into it (see throw); a
        # step is this one frame, as asyncio calls send() on each of the tool's steps
        call = self._call
        if call._done_callbacks is None:
            # cancelled before its first step: cancel_now closed the tool and recorded the end
            raise asyncio.CancelledError
        try:
            if error is None:
                return call._tool_call.send(value)
            return call._tool_call.throw(*error)
        except StopIteration as e:
            output = e.value
        except asyncio.CancelledError:
            try:
                call._end(cancelled=True)
            finally:
                call._scope.unregister(call)
            raise
        except Exception as e:
            if call._answered():  # before that, core reports it like any tool error
                call._log_failure(e)
            output = e
        except BaseException:
            call._scope.unregister(call)
            raise
        call._scope.unregister(call)
        call._end(output)
        raise StopIteration  # the task's result is None: every outcome is recorded above

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        return self.send(None, (typ,) if val is None and tb is None else (typ, val, tb))

    def close(self) -> None:
        if self._call._done_callbacks is None:
            return  # the tool is over (or was closed before its first step)
        try:
            self.throw(GeneratorExit)
        except (GeneratorExit, StopIteration):
            return
        raise RuntimeError("the tool ignored GeneratorExit")

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("a call's steps are run by its task, not awaited")

    @property
    def cr_frame(self) -> Any:
        return self._call._tool_call.cr_frame

    @property
    def cr_await(self) -> Any:
        return self._call._tool_call.cr_await

    @property
    def cr_code(self) -> Any:
        return self._call._tool_call.cr_code

    @property
    def cr_running(self) -> bool:
        return bool(self._call._tool_call.cr_running)
