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
from .log import logger
from .templates import FILLER_LINE_INSTRUCTIONS

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
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def track(self, call: BackgroundCall, filler: Filler | None) -> None:
        """Use ``filler`` for ``call`` from now on (None: no fillers); silence starts now."""
        call.filler, call.filler_count = filler, 0
        call.quiet_since = asyncio.get_running_loop().time()
        if filler is None or self._closed:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="asynctools_fillers")
        else:
            self._changed.set()

    def spoke_about(self, call: BackgroundCall) -> None:
        """Something about ``call`` was just said: its silence starts again."""
        if call.filler is not None:
            call.quiet_since = asyncio.get_running_loop().time()
            self._changed.set()

    def forget(self, call: BackgroundCall) -> None:
        """``call`` ended: no more fillers for it."""
        if call.filler is not None:
            call.filler = None
            self._changed.set()

    def close(self) -> None:
        """Stop at once (the session is closing)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()

    def _next_due(self) -> tuple[BackgroundCall, float] | None:
        due = [
            (call, call.quiet_since + call.filler.after)
            for call in self._running()
            if call.filler is not None
        ]
        return min(due, key=lambda d: d[1]) if due else None

    @utils.log_exceptions(logger=logger)
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed and (next_due := self._next_due()) is not None:
            call, at = next_due
            if at > loop.time():
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=at - loop.time())
                except asyncio.TimeoutError:
                    pass
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
                call.filler = None
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
