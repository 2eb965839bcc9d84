"""The realtime provider plugins' side of the compat layer: feeding their conversation.

How the plugin adds background outputs to a realtime model's conversation through the
public ``RealtimeSession.update_chat_ctx`` (:func:`add_to_provider`, never removing what
the model holds), and the private corners of the provider plugins it relies on, each only
for a plugin the tests run: the acknowledgements an OpenAI realtime update waits for
(:func:`release_provider_update`), the events the OpenAI plugin reports as it sends them
(:class:`ReconnectWatch`), and the tool options of livekit-plugins-google's Gemini Live
session (:func:`interrupt_with_response`). Everything else about releases is in
:mod:`livekit.plugins.asynctools._compat`, which re-exports these names.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from livekit.agents import llm
from livekit.agents.utils import is_given

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.voice import SpeechHandle


def provider_session(session: AgentSession[Any]) -> llm.RealtimeSession[Any] | None:
    """The realtime model's session of the current agent, if it runs on one."""
    activity = getattr(session.current_agent, "_activity", None)
    return getattr(activity, "realtime_llm_session", None) if activity else None


def takes_injected_function_calls(rt_session: llm.RealtimeSession[Any]) -> bool:
    """Whether the realtime model takes function calls it did not issue in its context.

    Core's ``RealtimeCapabilities.manual_function_calls`` says so (openai, azure, xai: yes;
    google, aws, ultravox: no). A provider that does not gets background outputs as
    messages: a function response under a call id it never issued is dropped by Gemini.
    """
    capabilities = getattr(rt_session.realtime_model, "capabilities", None)
    return bool(getattr(capabilities, "manual_function_calls", True))


async def add_to_provider(
    rt_session: llm.RealtimeSession[Any], items: Sequence[llm.ChatItem]
) -> None:
    """Add ``items`` to a realtime model's conversation, removing nothing from it.

    See :class:`_RemoteConversationPlus`.
    """
    await rt_session.update_chat_ctx(_RemoteConversationPlus(rt_session, items))


_PROVIDER_ACKNOWLEDGEMENTS = (
    "_item_create_future",
    "_item_delete_future",
    "_chat_ctx_event_futures",
)


def release_provider_update(rt_session: llm.RealtimeSession[Any]) -> bool:
    """Let an ``update_chat_ctx`` in flight return now, on a realtime session that closed.

    The update waits until the provider acknowledges each item, which a closed connection
    never does (the OpenAI plugin gives up after 5 s). Cancelling the wait instead leaves a
    failed gather future nobody retrieves, which asyncio logs as an error (Python 3.11).
    The OpenAI plugin keeps those acknowledgements in futures; they are resolved here.
    Returns False for a provider that keeps none: then the update is to be cancelled.
    """
    kept = [getattr(rt_session, n) for n in _PROVIDER_ACKNOWLEDGEMENTS if hasattr(rt_session, n)]
    if not kept:
        return False
    for futures in kept:
        for fut in list(futures.values()):
            if isinstance(fut, asyncio.Future) and not fut.done():
                fut.set_result(None)
    return True


class _HeldScheduling:
    """The scheduling a Gemini model had before the plugin made it ``INTERRUPT``, and how
    many speeches still have to send their ``now`` response under it."""

    __slots__ = ("previous", "pending")

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.pending = 0


# keyed by the model: livekit-plugins-google keeps the options on the model, shared by the
# sessions it serves (its session's ``_opts`` is the model's)
_interrupting: weakref.WeakKeyDictionary[Any, _HeldScheduling] = weakref.WeakKeyDictionary()


def interrupt_with_response(session: AgentSession[Any], speech: SpeechHandle) -> None:
    """Let the function response core sends for a call of ``speech`` interrupt the model.

    For a ``now`` answer to a call on Gemini Live (livekit-plugins-google) with
    ``tool_behavior=NON_BLOCKING``, where Gemini schedules each response as its
    ``scheduling`` says: ``INTERRUPT`` cuts the turn the model has under way and answers at
    once. The google plugin takes that field from its options when it builds the responses
    of the outputs core adds (``update_options(tool_response_scheduling=...)`` changes it
    without a reconnect), so it is ``INTERRUPT`` from now until ``speech`` is done, then
    what it was: core sends a call's response from the task of the speech that made the
    call, so that speech ends after the response went out (or failed). Responses core sends
    meanwhile (other calls of the same tool step) interrupt as well.

    Anywhere else this does nothing: a blocking call's response is answered at once
    anyway, Vertex AI drops the scheduling, and the plugin's floor delivers every other
    ``now`` output.
    """
    rt_session = provider_session(session)
    interrupt = _gemini_interrupt(rt_session) if rt_session is not None else None
    if rt_session is None or interrupt is None or speech.done():
        return
    model = rt_session.realtime_model
    held = _interrupting.get(model)
    if held is None:
        previous = rt_session._opts.tool_response_scheduling  # type: ignore[attr-defined]
        if previous == interrupt:  # the developer's choice: every response interrupts
            return
        held = _interrupting[model] = _HeldScheduling(previous)
        rt_session.update_options(tool_response_scheduling=interrupt)  # type: ignore[call-arg]
    held.pending += 1
    speech.add_done_callback(lambda _: _release_interrupt(rt_session, held, interrupt))


def _release_interrupt(
    rt_session: llm.RealtimeSession[Any], held: _HeldScheduling, interrupt: Any
) -> None:
    held.pending -= 1
    if held.pending:
        return
    model = rt_session.realtime_model
    if _interrupting.get(model) is held:
        del _interrupting[model]
    opts: Any = rt_session._opts  # type: ignore[attr-defined]
    if opts.tool_response_scheduling != interrupt:
        return  # the developer set another scheduling meanwhile: it stays
    if is_given(held.previous):
        rt_session.update_options(tool_response_scheduling=held.previous)  # type: ignore[call-arg]
    else:
        # none was set (Gemini's default, WHEN_IDLE): update_options cannot unset it
        opts.tool_response_scheduling = held.previous


def _gemini_interrupt(rt_session: llm.RealtimeSession[Any]) -> Any:
    """``FunctionResponseScheduling.INTERRUPT`` if ``rt_session`` is a Gemini Live session
    of livekit-plugins-google that schedules responses (``NON_BLOCKING`` tools, not on
    Vertex AI) and whose ``update_options`` sets the scheduling; else None."""
    google = sys.modules.get("livekit.plugins.google.realtime")  # loaded if it is in use
    model_cls = getattr(google, "RealtimeModel", None)
    if model_cls is None or not isinstance(rt_session.realtime_model, model_cls):
        return None
    if "tool_response_scheduling" not in inspect.signature(rt_session.update_options).parameters:
        return None
    opts = getattr(rt_session, "_opts", None)
    if not hasattr(opts, "tool_response_scheduling") or getattr(opts, "vertexai", False):
        return None
    types = importlib.import_module("google.genai.types")
    if getattr(opts, "tool_behavior", None) != types.Behavior.NON_BLOCKING:
        return None
    return types.FunctionResponseScheduling.INTERRUPT


def unanswered(error: BaseException) -> bool:
    """Whether ``update_chat_ctx`` failed because the provider never acknowledged the items
    (its connection dropped and is being re-established), not because it refused them.

    The OpenAI-protocol clients (openai, azure, xai) raise ``RealtimeError("update_chat_ctx
    timed out.")`` when the acknowledgements do not come within their wait; a refusal is
    the provider's own error. Other providers: a plain ``asyncio.TimeoutError``.
    """
    return isinstance(error, asyncio.TimeoutError) or (
        isinstance(error, llm.RealtimeError) and "timed out" in str(error)
    )


def missing_from_provider(
    rt_session: llm.RealtimeSession[Any], items: Sequence[llm.ChatItem]
) -> list[llm.ChatItem]:
    """The ``items`` a realtime model's conversation does not hold (any more)."""
    if not items:
        return []
    remote = {item.id for item in rt_session.chat_ctx.items}
    return [item for item in items if item.id not in remote]


class ReconnectWatch:
    """Reports each time a realtime session has reconnected (core's ``session_reconnected``
    event, emitted by the OpenAI-protocol clients: openai, azure, xai).

    Such a client gives the new connection its conversation again, then reports the
    reconnection before the new connection confirmed any of it: its copy of the
    conversation (``RealtimeSession.chat_ctx``) starts empty. ``on_reconnected`` gets the
    ids of the items sent again, which the OpenAI plugin reports as it sends them
    (``openai_client_event_queued``, after the ``session.update`` that opens a
    reconnection); a provider that does not report them gives none.

    Args:
        rt_session: The session to watch.
        on_reconnected: Called with the ids of the items the reconnection sent again.
    """

    def __init__(
        self, rt_session: llm.RealtimeSession[Any], on_reconnected: Callable[[list[str]], None]
    ) -> None:
        self.rt_session = rt_session
        self._on_reconnected = on_reconnected
        self._sent_again: list[str] = []
        rt_session.on("session_reconnected", self._reconnected)
        rt_session.on("openai_client_event_queued", self._queued)

    def close(self) -> None:
        """Stop watching."""
        self.rt_session.off("session_reconnected", self._reconnected)
        self.rt_session.off("openai_client_event_queued", self._queued)

    def _queued(self, event: Any) -> None:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "session.update":
            self._sent_again = []
        elif kind == "conversation.item.create" and (item_id := event["item"].get("id")):
            self._sent_again.append(item_id)

    def _reconnected(self, _: Any) -> None:
        sent_again, self._sent_again = self._sent_again, []
        self._on_reconnected(sent_again)


async def wait_until_provider_holds(
    rt_session: llm.RealtimeSession[Any], item_ids: Sequence[str], *, timeout: float
) -> bool:
    """Wait until the client's copy of the realtime model's conversation holds ``item_ids``
    (the provider confirmed them: core's ``remote_item_added``), at most ``timeout``
    seconds. Returns whether it does."""
    remaining = set(item_ids) - {item.id for item in rt_session.chat_ctx.items}
    if not remaining:
        return True
    all_held = asyncio.Event()

    def added(event: llm.RemoteItemAddedEvent) -> None:
        remaining.discard(event.item.id)
        if not remaining:
            all_held.set()

    rt_session.on("remote_item_added", added)
    try:
        await asyncio.wait_for(all_held.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    finally:
        rt_session.off("remote_item_added", added)
    return True


class _RemoteConversationPlus(llm.ChatContext):
    """The provider's conversation plus ``items``: as given, and again when copied.

    ``RealtimeSession.update_chat_ctx`` makes the provider's conversation equal to the
    context it is given, deleting what that context lacks. This context holds, as given,
    the provider's conversation as the plugin last saw it (``rt_session.chat_ctx``, the
    public contract of every ``RealtimeSession``) plus the new items, so a provider plugin
    that diffs the items it is given (livekit-plugins-ultravox does) deletes nothing.
    A provider plugin that copies the context under its update lock first (openai, azure,
    aws) gets from :meth:`copy` the conversation as it is at that moment plus the items:
    that also keeps the answer the model generated while the update waited for the lock.
    """

    def __init__(self, rt_session: llm.RealtimeSession[Any], items: Sequence[llm.ChatItem]) -> None:
        self._rt_session = rt_session
        self._new_items = list(items)
        super().__init__(self._wanted().items)

    def _wanted(self) -> llm.ChatContext:
        current = self._rt_session.chat_ctx.copy()
        present = {item.id for item in current.items}
        # appended, as core adds its own tool outputs: not placed by creation time, which in
        # the client's copy is when the client learnt of an item (a reconnection gives the
        # whole conversation a new one, later than outputs made while it was down)
        current.items.extend(item for item in self._new_items if item.id not in present)
        return current

    def copy(self, **kwargs: Any) -> llm.ChatContext:
        return self._wanted().copy(**kwargs)
