"""Keeping a realtime model's conversation in step with the background outputs.

On a realtime model, every output the plugin adds to the agent's chat must reach the
provider's conversation too, before the model is asked about it, without removing
anything the model holds (see ``_compat.add_to_provider``). One :class:`ProviderFeed` per
session does that: outputs submitted in the same burst go in one update, in order; a
provider that takes no function calls it did not issue (core's ``manual_function_calls``)
gets them as messages from the start, and one that refuses them anyway gets them as
messages from then on, with one warning.

When the provider's connection drops and comes back, the client gives the new connection
its conversation again (up to livekit-agents 1.7 without its function calls), and what
was sent into the dropped connection is lost: once the new connection has confirmed what
it was given, every record of the session's background calls it lacks (the model's
original call and its first output included) is added again, in the order of the agent's
chat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from livekit.agents import llm, utils

from . import _compat
from .log import logger

if TYPE_CHECKING:
    from livekit.agents import AgentSession

OUTPUT_MESSAGE = "Background tool `{name}` (call_id {call_id}) reported: {output}"
"""How a background output reads when a realtime provider takes it as a message (one that
takes no function calls it did not issue, such as Gemini Live, Nova Sonic and Ultravox)."""


UNANSWERED_RETRIES = 3
"""How many more times outputs the model did not acknowledge are added (the connection may
be coming back), before they are taken as refused."""
UNANSWERED_PAUSE = 0.5
"""Seconds between those attempts."""
RECONNECT_WAIT = 5.0
"""Seconds to wait, after a reconnection, for the new connection to confirm the
conversation it was given (the OpenAI client waits as long for its own updates)."""


class ProviderFeed:
    """Sends one session's background outputs to its realtime model.

    Args:
        session: The session whose realtime model (of the current agent) is fed.
    """

    def __init__(self, session: AgentSession[Any]) -> None:
        self._session = session
        self._to_send: list[llm.ChatItem] = []
        self._task: asyncio.Task[None] | None = None
        self._sending_to: Any = None
        # ids of items the provider refused, given to it as messages instead; once it has
        # refused, every later output reaches it (and the local chat) as a message
        self._as_messages: set[str] = set()
        self._messages_only = False
        self._warned: set[str] = set()
        self._closed = False
        self._pausing = False  # between two attempts at outputs the model did not acknowledge
        # ids of every item sent, to add again what a reconnection loses
        self._records: set[str] = set()
        self._watch: _compat.ReconnectWatch | None = None
        self._restore = False  # a reconnection happened: add back what the model lacks
        self._reconnects = 0
        self._restore_task: asyncio.Task[None] | None = None
        if (rt_session := _compat.provider_session(session)) is not None:
            self._watch_reconnects(rt_session)

    @property
    def sending(self) -> bool:
        """Whether outputs are on their way to the model."""
        return self._task is not None and not self._task.done()

    async def wait_sent(self) -> None:
        """Wait until the outputs on their way have reached the model (or failed to)."""
        if self._task is not None:
            await asyncio.wait([self._task])

    def prepare(
        self, rt_session: llm.RealtimeSession[Any], items: Sequence[llm.ChatItem]
    ) -> Sequence[llm.ChatItem]:
        """``items`` in the form this model takes: as they are, or as messages."""
        if self._messages_only or not _compat.takes_injected_function_calls(rt_session):
            return outputs_as_messages(items)
        return items

    def send(self, rt_session: llm.RealtimeSession[Any], items: Sequence[llm.ChatItem]) -> None:
        """Add ``items`` to the model's conversation, with whatever else this burst sends."""
        self._watch_reconnects(rt_session)
        self._records.update(item.id for item in items)
        self._to_send.extend(items)
        self._start_sending(rt_session)

    def _start_sending(self, rt_session: llm.RealtimeSession[Any]) -> None:
        if not self.sending:
            self._sending_to = rt_session
            self._task = asyncio.create_task(self._send_all(), name="asynctools_send")

    def missing(
        self, rt_session: llm.RealtimeSession[Any], items: Sequence[llm.ChatItem]
    ) -> list[llm.ChatItem]:
        """The ``items`` the model's conversation lacks, leaving out what it refused."""
        wanted = [item for item in items if item.id not in self._as_messages]
        return _compat.missing_from_provider(rt_session, wanted)

    def close(self) -> None:
        """Stop at once (the session is closing); an update on its way is let go."""
        self._closed = True
        self._to_send.clear()
        self._restore = False
        if self._watch is not None:
            self._watch.close()
        if self._restore_task is not None:
            self._restore_task.cancel()
        if self._pausing or (
            self.sending and not _compat.release_provider_update(self._sending_to)
        ):
            assert self._task is not None
            self._task.cancel()

    def _watch_reconnects(self, rt_session: llm.RealtimeSession[Any]) -> None:
        if self._watch is not None and self._watch.rt_session is rt_session:
            return
        if self._watch is not None:  # another agent's model: its reconnections are not ours
            self._watch.close()
        self._watch = _compat.ReconnectWatch(rt_session, self._on_reconnected)

    def _on_reconnected(self, sent_again: list[str]) -> None:
        self._reconnects += 1
        if self._closed or self._watch is None:
            return
        if self._restore_task is not None:
            self._restore_task.cancel()
        self._restore_task = asyncio.create_task(
            self._restore_after(self._watch.rt_session, sent_again), name="asynctools_restore"
        )

    @utils.log_exceptions(logger=logger)
    async def _restore_after(
        self, rt_session: llm.RealtimeSession[Any], sent_again: list[str]
    ) -> None:
        # the conversation the plugin adds to is the client's copy: it must hold again what
        # the new connection was given, or the records would be placed before all of it
        if not await _compat.wait_until_provider_holds(
            rt_session, sent_again, timeout=RECONNECT_WAIT
        ):
            logger.debug("the realtime model did not confirm its conversation after reconnecting")
        if self._closed:
            return
        # with nothing sent yet, the next batch adds back the original calls it follows up
        self._restore = True
        if self._records:
            self._start_sending(rt_session)

    def _lacking(self, batch: list[llm.ChatItem], *, everything: bool) -> list[llm.ChatItem]:
        """What of ``batch`` the model's conversation lacks, after the original calls (and
        their first outputs) that ``batch`` follows up and the model lacks (a reconnection
        may have lost them); with ``everything``, after every record of the session's
        background calls and their original calls that it lacks. In the order of the
        agent's chat."""
        chat = self._session.current_agent.chat_ctx.items
        records = self._records if everything else {item.id for item in batch}
        ours = [item for item in chat if item.id in records]
        # a later output's call id is the original's with a suffix (`<id>_update_1`): each
        # part before an underscore may be the original's id (one set, not a scan per call)
        prefixes = {
            item.call_id[:i]
            for item in ours
            if isinstance(item, _CALL_ITEMS)
            for i, char in enumerate(item.call_id)
            if char == "_"
        }
        originals = {
            item.call_id
            for item in chat
            if isinstance(item, llm.FunctionCall)
            and item.id not in self._records
            and item.call_id in prefixes
        }
        wanted = [
            item
            for item in chat
            if item.id in records or (isinstance(item, _CALL_ITEMS) and item.call_id in originals)
        ]
        held = {item.id for item in wanted}
        wanted.extend(item for item in batch if item.id not in held)
        return self.missing(self._sending_to, wanted)

    @utils.log_exceptions(logger=logger)
    async def _send_all(self) -> None:
        while self._to_send or self._restore:
            batch, self._to_send = self._to_send, []
            everything, self._restore = self._restore, False
            batch = self._lacking(batch, everything=everything)
            for attempt in range(UNANSWERED_RETRIES + 1):
                if not batch:
                    break
                reconnects = self._reconnects
                try:
                    await _compat.add_to_provider(self._sending_to, batch)
                except Exception as e:
                    lost = _compat.unanswered(e) or self._reconnects != reconnects
                    if self._closed:  # the session closed meanwhile: nobody is left to tell
                        logger.debug("realtime model closed before it had the tool outputs")
                    elif lost and attempt < UNANSWERED_RETRIES:
                        # no answer is no refusal: the connection is likely down and being
                        # re-established; what the model lacks, under the call ids, again
                        logger.info("the realtime model did not acknowledge the tool outputs")
                        self._pausing = True
                        try:
                            await asyncio.sleep(UNANSWERED_PAUSE)
                        finally:
                            self._pausing = False
                        batch = self._lacking(batch, everything=True)
                        continue
                    else:
                        await self._send_as_messages(batch)
                break

    async def _send_as_messages(self, batch: list[llm.ChatItem]) -> None:
        """The provider refused the outputs (say, under call ids it never issued) although
        it says it takes such calls: give it their text as messages, here and from now on;
        the local chat gets the same messages, so core never offers the refused items
        again."""
        self._messages_only = True
        self._as_messages.update(item.id for item in batch)
        messages = outputs_as_messages(batch)
        self._records.update(item.id for item in messages)
        _compat.replace_in_local_chat(self._session, batch, messages)
        try:
            await _compat.add_to_provider(self._sending_to, messages)
        except Exception:
            self._warn_once(
                "the realtime model refused background tool outputs, even as messages; "
                "it does not know about them"
            )
        else:
            self._warn_once(
                "the realtime model refused background tool outputs under their call ids; "
                "they were added as messages instead"
            )

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning(message)


_CALL_ITEMS = (llm.FunctionCall, llm.FunctionCallOutput)


def outputs_as_messages(items: Sequence[llm.ChatItem]) -> list[llm.ChatItem]:
    """The tool outputs among ``items`` as messages that say what they are (the function
    calls are dropped: the message names the tool and the call id). They are user-role
    messages, the one role every realtime provider takes into its context (Gemini Live
    drops system messages), worded so the model does not take them for the user's words."""
    return [
        llm.ChatMessage(
            role="user",
            content=[
                OUTPUT_MESSAGE.format(name=item.name, call_id=item.call_id, output=item.output)
            ],
        )
        if isinstance(item, llm.FunctionCallOutput)
        else item
        for item in items
        if not isinstance(item, llm.FunctionCall)
    ]
