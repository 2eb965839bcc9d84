"""Putting background updates and results in the chat, and speaking them in one reply.

There is one :class:`DeliveryCoordinator` per ``AgentSession``, shared by every
:class:`~livekit.plugins.asynctools.AsyncToolset` of that session. A delivery travels:

1. :meth:`DeliveryCoordinator.submit` adds it to the agent's chat context and the
   session history at once, in place (so a user turn that starts meanwhile already sees
   it, at a cost that does not grow with the history). On a realtime model, everything
   submitted in the same burst reaches the provider's conversation in one update, in
   submission order (:class:`~livekit.plugins.asynctools.provider_feed.ProviderFeed`).
   A ``silent`` delivery stops here.
2. :meth:`_speak_loop` waits until the conversation is free
   (:class:`~livekit.plugins.asynctools.idle.ConversationFloor`), or for a ``now``
   delivery only until the user is quiet (cutting off interruptible agent speech), then
   asks for ONE reply covering everything pending, from any toolset. A result that
   hands off to another agent does so at that moment instead.
3. A reply that is interrupted before it played out keeps its deliveries pending, so they
   are spoken again at the next free moment, and the model is told what the user heard;
   so does a reply that failed (the model or the TTS raised: core logs why and ends the
   reply without playing it out), at most :data:`MAX_FAILED_REPLIES` times in a row;
   what no reply gave before the session ended is recorded as not heard.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit.agents import llm
from livekit.agents.types import NOT_GIVEN

from . import _compat
from .events import DeliveryMode, Lifecycle
from .fillers import FillerSchedule
from .idle import ConversationFloor
from .log import logger
from .provider_feed import ProviderFeed
from .templates import text_for

if TYPE_CHECKING:
    from livekit.agents import Agent, AgentSession
    from livekit.agents.voice import SpeechHandle

    from .background import BackgroundCall

RECEIPT_KEY = "lk.asynctools.receipt"
"""Key of the receipt in the ``extra`` of a delivered function call: ``heard``,
``interrupted`` (given again later) or ``not_given`` (the session ended first)."""

MAX_FAILED_REPLIES = 2
"""How many deferred replies in a row may fail (the model or the TTS raised, so nothing
played out) before the coordinator stops asking again; their deliveries then stay pending
until the next update or result restarts delivery, or are recorded as not heard when the
session ends. Bounded so that a provider that is down is not asked in a loop (core closes
the session after ``max_unrecoverable_errors`` failures in a row)."""


@dataclass(slots=True)
class Delivery:
    """One update or result of a background call, on its way to the user.

    Attributes:
        items: The function call and its output, as the model will see them.
        call_id: The call id of the output (``<call_id>_update_<n>``, ``_finished``...).
        is_result: True for a final result, an error or a cancellation: the reply to it
            may call tools. Progress updates are answered with ``tool_choice="none"``.
        mode: How it reaches the user (:data:`~livekit.plugins.asynctools.DeliveryMode`).
        call: The background call it comes from.
        handoff: The agent a final result hands off to, at the next free moment.
    """

    items: Sequence[llm.ChatItem]
    call_id: str
    is_result: bool
    mode: DeliveryMode = "idle"
    call: BackgroundCall | None = None
    handoff: Agent | None = None


class DeliveryCoordinator:
    """Delivers one session's background updates and results.

    Args:
        session: The session whose chat and speech this coordinator drives.
        lifecycle: Where reply events go.
        running: The session's running calls (for their fillers).
    """

    def __init__(
        self,
        session: AgentSession[Any],
        lifecycle: Lifecycle,
        running: Callable[[], Iterable[BackgroundCall]] = tuple,
    ) -> None:
        self._session = session
        self._lifecycle = lifecycle
        self.floor = ConversationFloor(session)
        self.fillers = FillerSchedule(self, running)
        self._feed = ProviderFeed(session)
        self._to_speak: list[Delivery] = []
        # the batch whose reply is playing, and its speech
        self._in_flight: list[Delivery] = []
        self._playing: SpeechHandle | None = None
        self._speak_task: asyncio.Task[None] | None = None
        self._waiting_for_floor = False
        # what the user heard of the last reply, when they cut it off
        self._interrupted: tuple[list[str], str] | None = None
        # set while a tool holds the floor (ctx.foreground()); resolved when it lets go
        self._hold: asyncio.Future[None] | None = None
        self._hold_owner: BackgroundCall | None = None
        self._spoken = asyncio.Event()
        self._closed = False

    @property
    def pending(self) -> int:
        """Deliveries submitted and not yet spoken."""
        return len(self._to_speak)

    @property
    def busy(self) -> bool:
        """Whether a reply is pending or playing, or a tool holds the floor."""
        return bool(self._to_speak or self._in_flight) or self._hold is not None

    def pending_for(self, call: BackgroundCall) -> bool:
        """Whether something of ``call`` waits to be spoken or is being spoken."""
        return any(d.call is call for d in (*self._to_speak, *self._in_flight))

    def submit(self, delivery: Delivery) -> None:
        """Queue ``delivery``: add it to the chat now, speak it when the conversation is free."""
        if self._closed:
            # the session is gone: keep the record in the history, there is no one to tell
            self._session.history.insert(delivery.items)
            return
        rt_session = _compat.provider_session(self._session)
        if rt_session is not None:
            delivery.items = self._feed.prepare(rt_session, delivery.items)
        _compat.add_to_local_chat(self._session, delivery.items)
        if rt_session is not None:
            self._feed.send(rt_session, delivery.items)
        if delivery.mode == "silent" and delivery.handoff is None:
            return  # the model has it; it rides along with whatever is said next
        self._to_speak.append(delivery)
        if delivery.mode == "now":
            self._hurry()
        if self._speak_task is None or self._speak_task.done():
            self._speak_task = asyncio.create_task(self._speak_loop(), name="asynctools_speak")
            # the floor keeps watching from now (the call that submitted this may end in the
            # same step) until the loop is over
            self.floor.use()
            self._speak_task.add_done_callback(self._speak_loop_ended)

    def _speak_loop_ended(self, task: asyncio.Task[None]) -> None:
        self.floor.done_with()
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("deferred reply loop failed", exc_info=error)

    def _hurry(self) -> None:
        """A ``now`` delivery: stop waiting for a fully free conversation."""
        if self._waiting_for_floor and self._speak_task is not None:
            # waiting changes no state: start over with the shorter wait
            self._speak_task.cancel()
            self._speak_task = None
            self._waiting_for_floor = False
        elif self._playing is not None and not self._playing.done():
            if self._playing.allow_interruptions:
                self._playing.interrupt()

    def close(self) -> None:
        """Stop delivering at once; what is pending stays in the chat history only, with a
        record that the user never heard it."""
        self._closed = True
        self.floor.close()
        self.fillers.close()
        self._feed.close()
        self._release_hold()
        not_given = [*self._in_flight, *self._to_speak]
        self._in_flight, self._to_speak = [], []
        if not_given:
            self._record_not_given(not_given)
        if self._speak_task is not None:
            self._speak_task.cancel()

    async def _speak_loop(self) -> None:
        # runs while something is pending, so an idle session holds no task of ours; what
        # it raises is logged as it ends (_speak_loop_ended). Every delivery passes here:
        # the batch is searched with plain loops, which build no generator each time.
        resent: set[str] = set()
        failed_replies = 0
        while self._to_speak and not self._closed:
            urgent = False
            for d in self._to_speak:
                if d.mode == "now":
                    urgent = True
                    break
            self._waiting_for_floor = True
            try:
                if urgent:
                    await self.floor.wait_until_user_quiet()
                else:
                    await self.floor.wait_until_free(in_use=True)  # see submit
            except _compat.SessionClosing:
                return
            self._waiting_for_floor = False
            if self._hold is not None:  # a tool talks with the user: wait until it is done
                await asyncio.wait([self._hold])
                continue
            if self._feed.sending:
                # the realtime model must have the outputs before it is asked about them
                await self._feed.wait_sent()
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
                self._feed.send(rt_session, missing)
                continue
            if urgent and (current := self._session.current_speech) is not None:
                if not current.done():
                    if current.allow_interruptions:
                        current.interrupt()
                    await current.wait_for_playout()
                    continue
            # nothing may be awaited between the floor being free and the reply being queued
            resent.clear()
            batch, self._to_speak = self._to_speak, []
            handoff = None
            for d in batch:
                if d.handoff is not None:
                    handoff = d
                    break
            if handoff is not None:
                self._to_speak[:0] = [d for d in batch if d is not handoff]
                self._hand_off(handoff)
                continue
            handle = self._ask_for_reply(batch)
            if handle is None:
                self._to_speak[:0] = batch
                return
            if await self._play(handle, batch):
                failed_replies = 0
                continue
            failed_replies += 1
            if failed_replies > MAX_FAILED_REPLIES:
                logger.warning(
                    "deferred replies keep failing, not asking again until new results arrive",
                    extra={"call_ids": [d.call_id for d in self._to_speak]},
                )
                return

    async def _play(self, handle: SpeechHandle, batch: list[Delivery]) -> bool:
        """Wait for ``handle`` to play ``batch``; False if it failed (the model, the TTS or
        the realtime model reported an error while it was generated and played, and the
        user did not interrupt it): its deliveries are pending again."""
        self._lifecycle.reply("scheduled", batch, speech_id=handle.id)
        self._in_flight, self._playing = batch, handle
        # the floor watches the session until the speak loop is over (see submit)
        errors = self.floor.reply_errors
        played: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # the handle's done callback, not wait_for_playout(): that wraps the same wait in a
        # coroutine, a check for a tool waiting on its own speech, and a shield
        handle.add_done_callback(functools.partial(_set_played, played))
        try:
            await played
        finally:
            self._in_flight, self._playing = [], None
        failed = not handle.interrupted and self.floor.reply_errors > errors
        if handle.interrupted or failed:
            heard = heard_text(handle)
            ids = [d.call_id for d in batch]
            if failed:
                logger.warning(
                    "deferred reply failed before it played out, giving its results again",
                    extra={"call_ids": ids},
                )
            else:
                logger.debug(
                    "deferred reply interrupted, speaking its results again when free",
                    extra={"call_ids": ids},
                )
            self._receipt(batch, "interrupted")
            self._interrupted = (ids, heard)
            self._to_speak[:0] = batch
            self._lifecycle.reply("interrupted", batch, speech_id=handle.id, heard=heard)
        else:
            self._receipt(batch, "heard")
            self._interrupted = None
            for d in batch:
                if d.call is not None:
                    self.fillers.spoke_about(d.call)
            self._lifecycle.reply("heard", batch, speech_id=handle.id)
        self._spoken.set()
        self._spoken.clear()
        return not failed

    def _hand_off(self, delivery: Delivery) -> None:
        assert delivery.handoff is not None
        try:
            self._session.update_agent(delivery.handoff)
        except RuntimeError:
            if not _compat.session_is_closing(self._session):
                raise
        else:
            self._receipt([delivery], "heard")

    def _receipt(self, batch: Sequence[Delivery], receipt: str) -> None:
        for d in batch:
            d.items[0].extra[RECEIPT_KEY] = receipt  # type: ignore[union-attr]
            if d.call is not None and not d.is_result:
                d.call.heard(receipt == "heard")

    def _record_not_given(self, batch: list[Delivery]) -> None:
        ids = [d.call_id for d in batch]
        self._receipt(batch, "not_given")
        text = self._text("not_heard", batch, call_ids=ids, heard="")
        self._session.history.insert([llm.ChatMessage(role="system", content=[text])])
        self._lifecycle.reply("not_given", batch)

    def _text(self, name: str, batch: Sequence[Delivery], **args: Any) -> str:
        """A reply-level text: the oldest call's settings, then the agent's and session's."""
        for d in batch:
            if d.call is not None:
                return d.call.text(name, **args)
        return text_for(name, args, self._session)

    # the floor, for ctx.foreground()

    async def take_floor(self, owner: BackgroundCall) -> None:
        """Wait until ``owner``'s pending outputs are spoken and the conversation is free,
        then keep every deferred reply and filler quiet until :meth:`release_floor`."""
        while True:
            if self._hold is not None:
                await asyncio.wait([self._hold])
                continue
            if self.pending_for(owner):
                await self._spoken.wait()
                continue
            await self.floor.wait_until_free()
            if self._hold is None and not self.pending_for(owner):
                break
        self._hold = asyncio.get_running_loop().create_future()
        self._hold_owner = owner

    def release_floor(self, owner: BackgroundCall) -> None:
        """Let deferred replies speak again, if ``owner`` holds the floor."""
        if self._hold_owner is owner:
            self._release_hold()
            self.fillers.spoke_about(owner)  # it just talked with the user

    def _release_hold(self) -> None:
        hold, self._hold, self._hold_owner = self._hold, None, None
        if hold is not None and not hold.done():
            hold.set_result(None)

    def _lost_by(self, rt_session: Any, resent: set[str]) -> list[llm.ChatItem]:
        """Pending outputs the realtime model's conversation lacks (once per item)."""
        pending = [item for d in self._to_speak for item in d.items if item.id not in resent]
        return self._feed.missing(rt_session, pending)

    def _ask_for_reply(self, batch: list[Delivery]) -> Any:
        call_ids = []
        acts_on_result = False
        for d in batch:
            call_ids.append(d.call_id)
            acts_on_result = acts_on_result or d.is_result
        instructions = self._text("reply", batch, pending_call_ids=call_ids)
        if self._interrupted is not None:
            ids, heard = self._interrupted
            note = self._text("reply_interrupted", batch, call_ids=ids, heard=heard)
            instructions = f"{instructions}\n{note}"
        try:
            return self.floor.generate_reply(
                instructions=instructions,
                tool_choice=NOT_GIVEN if acts_on_result else "none",
            )
        except RuntimeError:
            if _compat.session_is_closing(self._session):
                return None
            raise


def _set_played(played: asyncio.Future[None], _: SpeechHandle) -> None:
    if not played.done():  # not when the speak loop was cancelled meanwhile
        played.set_result(None)


def heard_text(handle: SpeechHandle) -> str:
    """What the user heard of ``handle``: the text of its (interrupted) agent messages."""
    return " ".join(
        item.text_content or ""
        for item in handle.chat_items
        if isinstance(item, llm.ChatMessage) and item.role == "assistant"
    ).strip()
