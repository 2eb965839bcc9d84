"""Putting background updates and results in the chat, and speaking them in one reply.

There is one :class:`DeliveryCoordinator` per ``AgentSession``, shared by every
:class:`~livekit.plugins.asynctools.AsyncToolset` of that session. A delivery travels:

1. :meth:`DeliveryCoordinator.submit` queues it. Everything submitted in the same burst
   is added to the chat context in one batch (:meth:`_add_to_chat`), in submission order,
   on the next loop iteration: a user turn that starts meanwhile already sees it.
2. :meth:`_speak_loop` waits until the conversation is free
   (:class:`~livekit.plugins.asynctools.idle.ConversationFloor`), then asks for ONE reply
   covering everything pending, from any toolset.
3. A reply that is interrupted before it played out keeps its deliveries pending, so they
   are spoken again at the next free moment: no result is dropped because the user spoke.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit.agents import llm, utils
from livekit.agents.types import NOT_GIVEN

from . import _compat
from .idle import ConversationFloor
from .log import logger
from .templates import REPLY_INSTRUCTIONS

if TYPE_CHECKING:
    from livekit.agents import AgentSession


@dataclass
class Delivery:
    """One update or result of a background call, on its way to the user.

    Attributes:
        items: The function call and its output, as the model will see them.
        call_id: The call id of the output (``<call_id>_update_<n>``, ``_finished``...).
        is_result: True for a final result, an error or a cancellation: the reply to it
            may call tools. Progress updates are answered with ``tool_choice="none"``.
    """

    items: Sequence[llm.ChatItem]
    call_id: str
    is_result: bool


class DeliveryCoordinator:
    """Delivers one session's background updates and results.

    Args:
        session: The session whose chat and speech this coordinator drives.
    """

    def __init__(self, session: AgentSession[Any]) -> None:
        self._session = session
        self._floor = ConversationFloor(session)
        self._to_add: list[Delivery] = []
        self._to_speak: list[Delivery] = []
        self._added = asyncio.Event()
        self._add_task: asyncio.Task[None] | None = None
        self._speak_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Deliveries submitted and not yet spoken."""
        return len(self._to_add) + len(self._to_speak)

    def submit(self, delivery: Delivery) -> None:
        """Queue ``delivery``: add it to the chat now, speak it when the conversation is free."""
        if self._closed:
            # the session is gone: keep the record in the history, there is no one to tell
            self._session.history.insert(list(delivery.items))
            return
        self._to_add.append(delivery)
        if self._add_task is None or self._add_task.done():
            self._add_task = asyncio.create_task(self._add_to_chat(), name="asynctools_add")
        if self._speak_task is None or self._speak_task.done():
            self._speak_task = asyncio.create_task(self._speak_loop(), name="asynctools_speak")

    def close_now(self) -> None:
        """Stop delivering at once; what is pending stays in the chat history only."""
        self._closed = True
        self._floor.close()
        for task in (self._add_task, self._speak_task):
            if task is not None:
                task.cancel()

    async def aclose(self) -> None:
        """Stop delivering. What is still pending stays in the chat history only."""
        self._closed = True
        self._floor.close()
        tasks = [t for t in (self._add_task, self._speak_task) if t is not None]
        await utils.aio.cancel_and_wait(*tasks)

    @utils.log_exceptions(logger=logger)
    async def _add_to_chat(self) -> None:
        while self._to_add:
            batch, self._to_add = self._to_add, []
            try:
                await _compat.add_to_chat(self._session, [i for d in batch for i in d.items])
            except Exception:
                logger.exception("failed to add background tool output to the chat")
            self._to_speak.extend(batch)
            self._added.set()

    @utils.log_exceptions(logger=logger)
    async def _speak_loop(self) -> None:
        # runs while something is pending, so an idle session holds no task of ours
        while (self._to_add or self._to_speak) and not self._closed:
            if not self._to_speak:
                await self._added.wait()
                self._added.clear()
                continue
            try:
                await self._floor.wait_until_free()
            except _compat.SessionClosing:
                return
            # nothing may be awaited between the floor being free and the reply being queued
            batch, self._to_speak = self._to_speak, []
            handle = self._ask_for_reply(batch)
            if handle is None:
                return
            await handle.wait_for_playout()
            if handle.interrupted:
                logger.debug(
                    "deferred reply interrupted, speaking its results again when free",
                    extra={"call_ids": [d.call_id for d in batch]},
                )
                self._to_speak[:0] = batch

    def _ask_for_reply(self, batch: list[Delivery]) -> Any:
        call_ids = [d.call_id for d in batch]
        acts_on_result = any(d.is_result for d in batch)
        try:
            return self._session.generate_reply(
                instructions=REPLY_INSTRUCTIONS.format(pending_call_ids=call_ids),
                tool_choice=NOT_GIVEN if acts_on_result else "none",
            )
        except RuntimeError:
            if _compat.session_is_closing(self._session):
                return None
            raise
