"""What belongs to one ``AgentSession``: its running background calls and its delivery.

Nothing here is shared between sessions: a session's calls can only be listed or
cancelled through that session, with or without a job context, however many sessions
run in the process. The scope is kept in a weak mapping keyed by the session, so it
goes away with it, and is closed when the session closes.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from .default_texts import CANCEL_REASON_SESSION_ENDED
from .delivery import DeliveryCoordinator
from .events import Lifecycle

if TYPE_CHECKING:
    from livekit.agents import AgentSession

    from .background import BackgroundCall

_scopes: weakref.WeakKeyDictionary[AgentSession[Any], SessionScope] = weakref.WeakKeyDictionary()


def session_scope(session: AgentSession[Any]) -> SessionScope:
    """The scope of ``session``, created on first use."""
    scope = _scopes.get(session)
    if scope is None:
        scope = _scopes[session] = SessionScope(session)
    return scope


def existing_scope(session: AgentSession[Any]) -> SessionScope | None:
    """The scope of ``session`` if a background call ever ran in it."""
    return _scopes.get(session)


class SessionScope:
    """One session's running background calls and its delivery coordinator.

    Args:
        session: The session this scope belongs to.
    """

    def __init__(self, session: AgentSession[Any]) -> None:
        self._session = weakref.ref(session)
        self._calls: dict[str, BackgroundCall] = {}
        self.lifecycle = Lifecycle.of(session)
        self.delivery = DeliveryCoordinator(session, self.lifecycle, self._calls.values)
        session.once("close", self._on_session_close)

    @property
    def calls(self) -> list[BackgroundCall]:
        """The calls still running, oldest first."""
        return list(self._calls.values())

    def get(self, call_id: str) -> BackgroundCall | None:
        """The running call with this call id, if any."""
        return self._calls.get(call_id)

    def register(self, call: BackgroundCall) -> None:
        """Track a call that just started."""
        self._calls[call.call_id] = call

    def unregister(self, call: BackgroundCall) -> None:
        """Forget a call that ended."""
        call_id = call.function_call.call_id
        if self._calls.get(call_id) is call:
            del self._calls[call_id]

    def _on_session_close(self, _: Any) -> None:
        session = self._session()
        if session is not None and _scopes.get(session) is self:
            del _scopes[session]
        # an event handler cannot await: cancel now, the tasks end on the next iteration
        for call in self.calls:
            call.cancel_now(CANCEL_REASON_SESSION_ENDED)
        self.delivery.close()
