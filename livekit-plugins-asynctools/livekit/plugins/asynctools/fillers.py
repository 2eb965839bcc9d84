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
from dataclasses import dataclass
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


@dataclass(slots=True)
class _Tracked:
    filler: Filler
    last_spoken: float
    said: int = 0


class FillerSchedule:
    """Says fillers for one session's running calls.

    Args:
        coordinator: The session's delivery coordinator (whose floor fillers share).
    """

    def __init__(self, coordinator: DeliveryCoordinator) -> None:
        self._coordinator = coordinator
        self._tracked: dict[BackgroundCall, _Tracked] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def track(self, call: BackgroundCall, filler: Filler | None) -> None:
        """Start counting silence for ``call`` with ``filler`` (None: stop its fillers)."""
        if self._closed:
            return
        if filler is None:
            self.forget(call)
            return
        self._tracked[call] = _Tracked(filler, asyncio.get_running_loop().time())
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="asynctools_fillers")
        else:
            self._changed.set()

    def spoke_about(self, call: BackgroundCall) -> None:
        """Something about ``call`` was just said: its silence starts again."""
        tracked = self._tracked.get(call)
        if tracked is not None:
            tracked.last_spoken = asyncio.get_running_loop().time()
            self._changed.set()

    def forget(self, call: BackgroundCall) -> None:
        """``call`` ended: no more fillers for it."""
        if self._tracked.pop(call, None) is not None:
            self._changed.set()

    def close(self) -> None:
        """Stop at once (the session is closing)."""
        self._closed = True
        self._tracked.clear()
        if self._task is not None:
            self._task.cancel()

    @utils.log_exceptions(logger=logger)
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._tracked and not self._closed:
            call, tracked = min(
                self._tracked.items(), key=lambda kv: kv[1].last_spoken + kv[1].filler.after
            )
            wait = tracked.last_spoken + tracked.filler.after - loop.time()
            if wait > 0:
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=wait)
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
            if self._tracked.get(call) is not tracked:
                continue  # the call ended while we waited
            if tracked.last_spoken + tracked.filler.after > loop.time():
                continue  # something was said about it meanwhile
            handle = self._say(call, tracked)
            tracked.said += 1
            if tracked.said >= tracked.filler.max_count:
                self._tracked.pop(call, None)
            if handle is None:
                return
            await handle.wait_for_playout()
            tracked.last_spoken = loop.time()

    def _say(self, call: BackgroundCall, tracked: _Tracked) -> SpeechHandle | None:
        session = call.ctx.session
        lines = tracked.filler.lines
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
            line = lines[tracked.said % len(lines)]
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
