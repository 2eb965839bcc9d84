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

The floor watches the session only while someone needs it (:meth:`ConversationFloor.use`):
a running call, a pending reply, a wait. While it watches, it also counts the failed
generations and syntheses core reports (:attr:`ConversationFloor.reply_errors`), so a
deferred reply learns it failed without a listener of its own, and a deferred reply is
asked for through it (:meth:`ConversationFloor.generate_reply`), which tracks the reply's
speech without hearing of it from core's emitter. An idle session, however
many calls it ran, keeps no listener of ours on its events, so its emits cost what core's
own listeners cost.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _compat

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.voice import SpeechHandle
    from livekit.agents.voice.events import EventTypes

USER_TURN_GRACE = 2.0
"""Seconds of silence (since the user stopped speaking or the last transcript) after which
a user turn that nothing committed or answered is considered over."""

_BUSY_AGENT_STATES = ("thinking", "speaking")
_REPLY_ERRORS = ("LLMError", "TTSError", "RealtimeModelError")

_ONE_EVENT = inspect.Signature([inspect.Parameter("ev", inspect.Parameter.POSITIONAL_ONLY)])


def _listener(handle: Callable[[Any], None]) -> Callable[[Any], None]:
    """One of the floor's session listeners, in the form core's ``EventEmitter`` handles
    cheaply: a plain function that carries its signature.

    The emitter looks up each listener's signature on every emit. For a bound method that
    builds a new signature each time (about 2.4 µs); this function carries a ready one,
    so an emit to it costs about 40% less. ``on()`` asks whether each listener it attaches
    is a coroutine function, which a plain function answers from its code flags at once
    (an instance with ``__call__`` took twice as long).

    Example:
        listener = _listener(floor._on_speech_created)
        session.on("speech_created", listener)
    """

    def listener(ev: Any, /) -> None:
        handle(ev)

    listener.__signature__ = _ONE_EVENT  # type: ignore[attr-defined]
    return listener


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
        # speeches seen created (or under way when watching began) and not yet done
        self._speeches: set[SpeechHandle] = set()
        self._users = 0
        self._watching = False
        self._closed = False
        # built once per session, not on each attach
        self._speech_listener = _listener(self._on_speech_created)
        self._listeners: tuple[tuple[EventTypes, Callable[[Any], None]], ...] = (
            ("speech_created", self._speech_listener),
            ("user_state_changed", _listener(self._on_user_state_changed)),
            ("agent_state_changed", _listener(self._on_agent_state_changed)),
            ("conversation_item_added", _listener(self._on_conversation_item_added)),
            ("user_input_transcribed", _listener(self._on_user_input_transcribed)),
            ("error", _listener(self._on_error)),
        )
        self.reply_errors = 0
        """Failed generations or syntheses core reported while the floor watched (a reply
        compares it before and after it plays)."""

    def use(self) -> None:
        """Someone needs the floor from now on: watch the session until :meth:`done_with`."""
        self._users += 1
        if not self._watching and not self._closed:
            self._watch()

    def done_with(self) -> None:
        """One user of :meth:`use` no longer needs the floor; the last one stops the watch."""
        self._users -= 1
        if self._users <= 0 and self._watching:
            self._unwatch()

    def close(self) -> None:
        """Stop watching the session, for good."""
        self._closed = True
        if self._watching:
            self._unwatch()
        self._changed.set()

    def _watch(self) -> None:
        session = self._session
        # what the floor missed while it did not watch: the speeches under way, and a
        # user turn still being spoken (every later turn is seen as it happens)
        self._speeches = set()
        for speech in _compat.speeches_under_way(session):
            self._track(speech)
        self._turn_open = session.user_state == "speaking"
        self._user_stopped_at = None
        for event, listener in self._listeners:
            session.on(event, listener)
        self._watching = True

    def _unwatch(self) -> None:
        for event, listener in self._listeners:
            self._session.off(event, listener)
        self._watching = False
        self._speeches = set()

    def generate_reply(self, **options: Any) -> SpeechHandle:
        """Ask the session for a reply (``session.generate_reply(**options)``) and watch its
        speech like any other.

        The floor tracks the new speech itself, with its ``speech_created`` listener off
        for the call: core's emitter looks up every listener's signature on each emit,
        which would be the costliest step of a deferred reply. Nothing else runs while
        ``generate_reply`` does, so the only speech created meanwhile is this one. The
        listener goes back without ``on()``'s checks, which it passed when the watch began
        (:func:`~livekit.plugins.asynctools._compat.listen_again`).

        Raises:
            RuntimeError: From ``generate_reply`` (the session is closing, or not started).

        Example:
            handle = floor.generate_reply(instructions="Tell the user.", tool_choice="none")
        """
        if not self._watching:
            return self._session.generate_reply(**options)
        self._session.off("speech_created", self._speech_listener)
        try:
            handle = self._session.generate_reply(**options)
        finally:
            _compat.listen_again(self._session, "speech_created", self._speech_listener)
        self._track(handle)
        return handle

    async def wait_until_free(self, *, in_use: bool = False) -> None:
        """Return once the agent is quiet and the user's last turn is over and answered.

        The caller must not await anything between this returning and starting its reply.
        Whether the agent is busy is core's call (its speech queue): ``agent_state`` can
        stay "speaking" after a text-only realtime reply on 1.5.

        Args:
            in_use: The caller holds a :meth:`use` for as long as it waits (the deferred
                reply loop does), so the wait need not take one of its own.
        """
        if not in_use:
            self.use()
        try:
            while True:
                self._changed.clear()
                await _compat.wait_for_core_idle(self._session)
                if (handoff := _compat.handoff_under_way(self._session)) is not None:
                    await asyncio.wait([handoff])
                    continue
                if self._speeches and (unfinished := self._unfinished_speeches()):
                    for speech in unfinished:
                        await speech.wait_for_playout()
                    continue

                if self._session.user_state == "speaking":
                    await self._changed.wait()
                    continue
                if self._turn_open:
                    now = asyncio.get_running_loop().time()
                    remaining = self._grace - (now - (self._user_stopped_at or now))
                    if remaining > 0:
                        try:
                            await asyncio.wait_for(self._changed.wait(), timeout=remaining)
                        except asyncio.TimeoutError:
                            pass
                        continue
                    # silence without a transcript: nothing will answer this turn
                    self._turn_open = False
                return
        finally:
            if not in_use:
                self.done_with()

    async def wait_until_user_quiet(self) -> None:
        """Return once the user is not speaking and no agent handoff is under way (the wait
        of a ``now`` delivery, which may cut off the agent but never the user)."""
        self.use()
        try:
            await self._wait_until_user_quiet()
        finally:
            self.done_with()

    async def _wait_until_user_quiet(self) -> None:
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

    def _track(self, speech: SpeechHandle) -> None:
        self._speeches.add(speech)
        # let it go once done: a done speech holds its whole turn (tool calls, their tasks)
        speech.add_done_callback(self._speeches.discard)

    def _on_speech_created(self, ev: Any) -> None:
        self._track(ev.speech_handle)

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

    def _on_error(self, ev: Any) -> None:
        # core reports a failed generation or synthesis on the session, on every release;
        # a reply that legitimately says nothing reports none
        if type(getattr(ev, "error", None)).__name__ in _REPLY_ERRORS:
            self.reply_errors += 1

    def _on_conversation_item_added(self, ev: Any) -> None:
        if getattr(ev.item, "role", None) == "user":
            self._turn_open = False
        self._changed.set()
