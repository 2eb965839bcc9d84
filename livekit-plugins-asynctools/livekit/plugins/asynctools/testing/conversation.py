"""What the user heard, in order: a log of the agent's and the user's messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent, AgentSession, llm


@dataclass(frozen=True)
class Line:
    """One message of the conversation.

    Attributes:
        role: ``assistant`` (what the user heard) or ``user``.
        text: The text; for an interrupted agent message, only the part that was played.
        interrupted: Whether the user cut the agent off.
        at: Wall-clock time the message was committed.
    """

    role: str
    text: str
    interrupted: bool
    at: float


class ConversationLog:
    """Records every user and agent message of a session as it is committed.

    Args:
        session: The session to listen to (before or after it starts).
    """

    def __init__(self, session: AgentSession[Any]) -> None:
        self.lines: list[Line] = []
        self._changed = asyncio.Event()
        session.on("conversation_item_added", self._on_item)

    @property
    def heard(self) -> list[str]:
        """The agent's messages, in the order the user heard them."""
        return [line.text for line in self.lines if line.role == "assistant"]

    async def wait_for(
        self, predicate: Callable[[ConversationLog], bool], *, timeout: float = 5.0
    ) -> None:
        """Wait until ``predicate(self)`` holds.

        Raises:
            TimeoutError: It did not hold within ``timeout`` seconds.
        """

        async def _wait() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def wait_for_heard(self, count: int, *, timeout: float = 5.0) -> list[str]:
        """Wait until the agent said ``count`` messages; returns them."""
        await self.wait_for(lambda log: len(log.heard) >= count, timeout=timeout)
        return self.heard

    def _on_item(self, ev: Any) -> None:
        item = ev.item
        if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant"):
            self.lines.append(
                Line(
                    role=item.role,
                    text=item.text_content or "",
                    interrupted=bool(getattr(item, "interrupted", False)),
                    at=time.time(),
                )
            )
        self._changed.set()


async def eventually(
    predicate: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Wait until ``predicate()`` holds, checking every ``interval`` seconds.

    For state that raises no event (the agent started speaking, a TTS request was made).

    Raises:
        TimeoutError: It did not hold within ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


@asynccontextmanager
async def text_session(
    agent: Agent, *, llm: llm.LLM[Any] | llm.RealtimeModel, **session_options: Any
) -> AsyncIterator[tuple[AgentSession[Any], ConversationLog]]:
    """Start a text-only ``AgentSession`` on ``agent`` and close it afterwards.

    Args:
        agent: The agent to run.
        llm: The model, typically a :class:`ScriptedLLM` or :class:`ScriptedRealtimeModel`.
        **session_options: Passed to ``AgentSession`` (e.g. ``tools=[...]``).

    Example::

        async with text_session(MyAgent(), llm=ScriptedLLM(responder=respond)) as (s, log):
            await s.run(user_input="book a flight")
            await log.wait_for_heard(2)
    """
    session: AgentSession[Any] = AgentSession(llm=llm, **session_options)
    log = ConversationLog(session)
    await session.start(agent)
    try:
        yield session, log
    finally:
        await session.aclose()
