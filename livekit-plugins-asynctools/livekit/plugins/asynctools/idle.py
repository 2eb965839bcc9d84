"""When the conversation has room for a deferred reply.

Core's own idle wait (``wait_for_inactive`` on 1.5, ``wait_for_idle`` on 1.6+) returns
as soon as no speech is scheduled and the user is silent. On 1.5 that is about 0.1 s
into the user's pause, before their turn is committed: a reply started then is cut off
by the rest of the turn. :class:`ConversationFloor` adds what core leaves out:

- once the user has spoken, their turn stays open until it is committed to the chat,
  answered, or ``user_turn_grace`` seconds of silence pass without either (a noise, a
  cough);
- a reply whose tools are running, or whose tool reply is not yet scheduled, is not
  over: core counts the agent as idle in that gap, but the same speech handle goes on
  with the tool reply, so the floor waits until every speech it saw created is done.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import _compat

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.voice import SpeechHandle

USER_TURN_GRACE = 2.0
"""Seconds of silence (since the user stopped speaking or the last transcript) after which
a user turn that nothing committed or answered is considered over."""

_BUSY_AGENT_STATES = ("thinking", "speaking")


class ConversationFloor:
    """Tells one session's deferred replies when they may speak.

    Args:
        session: The session to watch.
        user_turn_grace: Seconds of silence that end a user turn nobody committed.
    """

    def __init__(
        self, session: AgentSession[Any], *, user_turn_grace: float = USER_TURN_GRACE
    ) -> None:
        self._session = session
        self._grace = user_turn_grace
        self._changed = asyncio.Event()
        self._turn_open = False
        self._user_stopped_at: float | None = None
        # speeches seen created and not yet done; the one under way now, if any, too
        self._speeches: set[SpeechHandle] = set()
        if (current := session.current_speech) is not None:
            self._speeches.add(current)
        session.on("speech_created", self._on_speech_created)
        session.on("user_state_changed", self._on_user_state_changed)
        session.on("agent_state_changed", self._on_agent_state_changed)
        session.on("conversation_item_added", self._on_conversation_item_added)
        session.on("user_input_transcribed", self._on_user_input_transcribed)

    def close(self) -> None:
        """Stop watching the session."""
        self._session.off("speech_created", self._on_speech_created)
        self._session.off("user_state_changed", self._on_user_state_changed)
        self._session.off("agent_state_changed", self._on_agent_state_changed)
        self._session.off("conversation_item_added", self._on_conversation_item_added)
        self._session.off("user_input_transcribed", self._on_user_input_transcribed)
        self._changed.set()

    async def wait_until_free(self) -> None:
        """Return once the agent is quiet and the user's last turn is over and answered.

        The caller must not await anything between this returning and starting its reply.
        Whether the agent is busy is core's call (its speech queue): ``agent_state`` can
        stay "speaking" after a text-only realtime reply on 1.5.
        """
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            await _compat.wait_for_core_idle(self._session)
            if await _compat.wait_for_handoff(self._session):
                continue
            if unfinished := self._unfinished_speeches():
                for speech in unfinished:
                    await speech.wait_for_playout()
                continue

            if self._session.user_state == "speaking":
                await self._changed.wait()
                continue
            if self._turn_open:
                stopped_at = self._user_stopped_at or loop.time()
                remaining = self._grace - (loop.time() - stopped_at)
                if remaining > 0:
                    try:
                        await asyncio.wait_for(self._changed.wait(), timeout=remaining)
                    except asyncio.TimeoutError:
                        pass
                    continue
                # silence without a transcript: nothing will answer this turn
                self._turn_open = False
            return

    async def wait_until_user_quiet(self) -> None:
        """Return once the user is not speaking and no agent handoff is under way (the wait
        of a ``now`` delivery, which may cut off the agent but never the user)."""
        while True:
            self._changed.clear()
            if _compat.session_is_closing(self._session):
                raise _compat.SessionClosing
            if await _compat.wait_for_handoff(self._session):
                continue
            if self._session.user_state == "speaking":
                await self._changed.wait()
                continue
            return

    def _unfinished_speeches(self) -> list[SpeechHandle]:
        return [s for s in self._speeches if not s.done()]

    def _on_speech_created(self, ev: Any) -> None:
        speech = ev.speech_handle
        self._speeches.add(speech)
        # let it go once done: a done speech holds its whole turn (tool calls, their tasks)
        speech.add_done_callback(self._speeches.discard)

    def _on_user_state_changed(self, ev: Any) -> None:
        if ev.new_state == "speaking":
            self._turn_open = True
            self._user_stopped_at = None
        elif self._turn_open and self._user_stopped_at is None:
            self._user_stopped_at = asyncio.get_running_loop().time()
        self._changed.set()

    def _on_user_input_transcribed(self, ev: Any) -> None:
        # a lagging transcript of an open turn: the turn is still in progress
        if self._turn_open and self._session.user_state != "speaking":
            self._user_stopped_at = asyncio.get_running_loop().time()
        self._changed.set()

    def _on_agent_state_changed(self, ev: Any) -> None:
        if ev.new_state in _BUSY_AGENT_STATES and self._session.user_state != "speaking":
            # the agent is answering: core's idle wait now covers the rest of the turn
            self._turn_open = False
        self._changed.set()

    def _on_conversation_item_added(self, ev: Any) -> None:
        if getattr(ev.item, "role", None) == "user":
            self._turn_open = False
        self._changed.set()
