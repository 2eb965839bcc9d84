"""Filler lines, so a long call never leaves the user in silence.

One :class:`FillerSchedule` per session tracks the running calls that have a
:class:`~livekit.plugins.asynctools.Filler` and when something about each was last
said (its start, an update, a reply that covered it, a filler). A single task, alive
only while such calls run, sleeps until the earliest is due, waits for a free moment
that no deferred reply or held floor claims, and says one line: the next fixed line, or
a sentence the model writes from the ``filler`` template. On a realtime model without a
TTS the model speaks fixed lines too (``FILLER_LINE_INSTRUCTIONS``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from livekit.agents import llm, utils

from . import _compat
from .default_texts import FILLER_LINE_INSTRUCTIONS
from .log import logger

if TYPE_CHECKING:
    from livekit.agents.voice import SpeechHandle

    from .background import BackgroundCall
    from .delivery import DeliveryCoordinator
    from .policy import Filler


class FillerSchedule:
    """Says fillers for one session's running calls.

    The filler state of a call lives on the call itself (``filler``, ``filler_count``,
    ``quiet_since``), so a running call costs no more than three slots here.

    Args:
        coordinator: The session's delivery coordinator (whose floor fillers share).
        running: The session's running calls.
    """

    def __init__(
        self,
        coordinator: DeliveryCoordinator,
        running: Callable[[], Iterable[BackgroundCall]],
    ) -> None:
        self._coordinator = coordinator
        self._running = running
        # calls with a filler now; the task sleeps until the earliest is due, and is woken
        # only when a due time may come earlier (a new filler): updates and ends, on the hot
        # path of every call, only move due times later or away, and wake nothing
        self._with_filler = 0
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # until a filler is first due, a timer stands in for the task: a call that ends or
        # is spoken about before then (most do) never starts one
        self._start_timer: asyncio.TimerHandle | None = None
        self._closed = False

    def track(self, call: BackgroundCall, filler: Filler | None) -> None:
        """Use ``filler`` for ``call`` from now on (None: no fillers); silence starts now."""
        self._with_filler += (filler is not None) - (call.filler is not None)
        call.filler, call.filler_count = filler, 0
        loop = asyncio.get_running_loop()
        call.quiet_since = loop.time()
        if filler is None or self._closed:
            return
        if self._task is not None and not self._task.done():
            self._wake_up()
            return
        due = call.quiet_since + filler.after
        timer = self._start_timer
        if timer is None or due < timer.when():
            if timer is not None:
                timer.cancel()
            self._start_timer = loop.call_at(due, self._start)

    def spoke_about(self, call: BackgroundCall) -> None:
        """Something about ``call`` was just said: its silence starts again."""
        if call.filler is not None:
            call.quiet_since = asyncio.get_running_loop().time()

    def forget(self, call: BackgroundCall) -> None:
        """``call`` ended: no more fillers for it."""
        if call.filler is not None:
            call.filler = None
            self._with_filler -= 1

    def close(self) -> None:
        """Stop at once (the session is closing)."""
        self._closed = True
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        if self._task is not None:
            self._task.cancel()

    def _start(self) -> None:
        self._start_timer = None
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="asynctools_fillers")

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _next_due(self) -> tuple[BackgroundCall, float] | None:
        if self._with_filler == 0:
            return None
        due = [
            (call, call.quiet_since + call.filler.after)
            for call in self._running()
            if call.filler is not None
        ]
        return min(due, key=lambda d: d[1]) if due else None

    async def _sleep_until(self, at: float) -> None:
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_at(at, lambda: None if wake.done() else wake.set_result(None))
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    @utils.log_exceptions(logger=logger)
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed and (next_due := self._next_due()) is not None:
            call, at = next_due
            if at > loop.time():
                await self._sleep_until(at)
                continue
            try:
                await self._coordinator.floor.wait_until_free()
            except _compat.SessionClosing:
                return
            if self._coordinator.busy:  # a deferred reply or a held floor comes first
                await asyncio.sleep(0.05)
                continue
            filler = call.filler
            if filler is None or call.done():
                continue  # the call ended, or its filler changed, while we waited
            if call.quiet_since + filler.after > loop.time():
                continue  # something was said about it meanwhile
            handle = self._say(call, filler, call.filler_count)
            call.filler_count += 1
            if call.filler_count >= filler.max_count:
                self.forget(call)
            if handle is None:
                return
            await handle.wait_for_playout()
            call.quiet_since = loop.time()

    def _say(self, call: BackgroundCall, filler: Filler, count: int) -> SpeechHandle | None:
        session = call.ctx.session
        lines = filler.lines
        logger.debug(
            "saying a filler for a running background call",
            extra={"function": call.function_call.name, "call_id": call.call_id},
        )
        try:
            if lines is None:
                instructions = call.text(
                    "filler",
                    function_name=call.function_call.name,
                    call_id=call.call_id,
                    elapsed=time.time() - call.started_at,
                )
                return session.generate_reply(instructions=instructions, tool_choice="none")
            line = lines[count % len(lines)]
            if _speaks_without_tts(session):
                return session.generate_reply(
                    instructions=FILLER_LINE_INSTRUCTIONS.format(line=line), tool_choice="none"
                )
            return session.say(line, add_to_chat_ctx=True)
        except RuntimeError:
            if _compat.session_is_closing(session):
                return None
            raise


def _speaks_without_tts(session: Any) -> bool:
    """A realtime model with no TTS: ``say()`` has no voice, the model must speak."""
    return session.tts is None and isinstance(session.llm, llm.RealtimeModel)
