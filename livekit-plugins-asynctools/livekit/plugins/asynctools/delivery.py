"""Putting background updates and results in the chat, and speaking them in one reply.

There is one :class:`DeliveryCoordinator` per ``AgentSession``, shared by every
:class:`~livekit.plugins.asynctools.AsyncToolset` of that session. A delivery travels:

1. :meth:`DeliveryCoordinator.submit` adds it to the agent's chat context and the
   session history at once, in place (so a user turn that starts meanwhile already sees
   it, at a cost that does not grow with the history). On a realtime model, everything
   submitted in the same burst reaches the provider's conversation in one update
   (:meth:`_send_to_provider`), in submission order.
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


@dataclass(slots=True)
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
        self._to_send: list[llm.ChatItem] = []
        self._to_speak: list[Delivery] = []
        self._send_task: asyncio.Task[None] | None = None
        self._sending_to: Any = None
        self._speak_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Deliveries submitted and not yet spoken."""
        return len(self._to_speak)

    def submit(self, delivery: Delivery) -> None:
        """Queue ``delivery``: add it to the chat now, speak it when the conversation is free."""
        if self._closed:
            # the session is gone: keep the record in the history, there is no one to tell
            self._session.history.insert(delivery.items)
            return
        _compat.add_to_local_chat(self._session, delivery.items)
        if (rt_session := _compat.provider_session(self._session)) is not None:
            self._send(rt_session, delivery.items)
        self._to_speak.append(delivery)
        if self._speak_task is None or self._speak_task.done():
            self._speak_task = asyncio.create_task(self._speak_loop(), name="asynctools_speak")

    def close(self) -> None:
        """Stop delivering at once; what is pending stays in the chat history only."""
        self._closed = True
        self._floor.close()
        self._to_send.clear()
        if self._speak_task is not None:
            self._speak_task.cancel()
        sending = self._send_task is not None and not self._send_task.done()
        if sending and not _compat.release_provider_update(self._sending_to):
            assert self._send_task is not None
            self._send_task.cancel()

    def _send(self, rt_session: Any, items: Sequence[llm.ChatItem]) -> None:
        self._to_send.extend(items)
        if self._send_task is None or self._send_task.done():
            self._sending_to = rt_session
            self._send_task = asyncio.create_task(self._send_to_provider(), name="asynctools_send")

    @utils.log_exceptions(logger=logger)
    async def _send_to_provider(self) -> None:
        while self._to_send:
            batch, self._to_send = self._to_send, []
            try:
                await _compat.add_to_provider(self._sending_to, batch)
            except Exception:
                if self._closed:  # the session closed meanwhile: nobody is left to tell
                    logger.debug("realtime model closed before it had the tool outputs")
                else:
                    logger.exception("failed to add background tool output to the realtime model")

    @utils.log_exceptions(logger=logger)
    async def _speak_loop(self) -> None:
        # runs while something is pending, so an idle session holds no task of ours
        resent: set[str] = set()
        while self._to_speak and not self._closed:
            try:
                await self._floor.wait_until_free()
            except _compat.SessionClosing:
                return
            if self._send_task is not None and not self._send_task.done():
                # the realtime model must have the outputs before it is asked about them
                await asyncio.wait([self._send_task])
                continue
            rt_session = _compat.provider_session(self._session)
            if rt_session is not None and (missing := self._lost_by(rt_session, resent)):
                # core answers a tool call by updating the provider's conversation from a
                # copy taken before our outputs landed, which deletes them: add them again
                logger.debug(
                    "background tool outputs were removed from the realtime model, adding again",
                    extra={"item_ids": [item.id for item in missing]},
                )
                resent.update(item.id for item in missing)
                self._send(rt_session, missing)
                continue
            # nothing may be awaited between the floor being free and the reply being queued
            resent.clear()
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

    def _lost_by(self, rt_session: Any, resent: set[str]) -> list[llm.ChatItem]:
        """Pending outputs the realtime model's conversation lacks (once per item)."""
        pending = [item for d in self._to_speak for item in d.items if item.id not in resent]
        return _compat.missing_from_provider(rt_session, pending)

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
