"""Holding the floor: a background tool that talks with the user (``ctx.foreground()``).

While a call holds the floor, no deferred reply and no filler of the session speaks,
from any toolset; the call's own pending outputs are spoken before it takes it. The
hold is bounded: it ends with the block, when the call is cancelled, or after its
timeout, whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from livekit.agents import llm

from .delivery import heard_text
from .log import logger

if TYPE_CHECKING:
    from .background import BackgroundCall


@asynccontextmanager
async def hold_floor(call: BackgroundCall, *, timeout: float) -> AsyncIterator[None]:
    """Hold the session's floor for ``call`` (see :meth:`AsyncRunContext.foreground`).

    Raises:
        TimeoutError: The floor was not free within ``timeout`` seconds.
        ValueError: ``timeout`` is not a positive number.
    """
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    coordinator = call.scope.delivery
    try:
        await asyncio.wait_for(coordinator.take_floor(call), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"the conversation was not free within {timeout:g} s") from None
    release = asyncio.get_running_loop().call_later(timeout, _expire, call)
    try:
        yield
    finally:
        release.cancel()
        coordinator.release_floor(call)


def _expire(call: BackgroundCall) -> None:
    logger.warning(
        "a background tool held the floor past its timeout; releasing it",
        extra={"function": call.function_call.name, "call_id": call.call_id},
    )
    call.scope.delivery.release_floor(call)


MAX_ASKS = 3
"""How many times :meth:`AsyncRunContext.ask` puts its question before giving up on it,
when the user keeps speaking before any of it was heard."""


async def ask_user(call: BackgroundCall, question: str, *, timeout: float) -> str:
    """Have the agent ask ``question``; return the text of the user's answer.

    The answer is the user's first turn after the question began to be heard. A turn the
    user took before any of the question was heard answers something else (core answers
    it as usual): the question is put again, at most :data:`MAX_ASKS` times.

    Raises:
        TimeoutError: No answer within ``timeout`` seconds.
        ValueError: ``question`` is empty.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    session = call.ctx.session
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    turns: list[str] = []
    new_turn = asyncio.Event()

    def on_item(ev: Any) -> None:
        item = ev.item
        if isinstance(item, llm.ChatMessage) and item.role == "user":
            turns.append(item.text_content or "")
            new_turn.set()

    async def until(done: Any) -> None:
        while not done():
            new_turn.clear()
            if (left := deadline - loop.time()) <= 0:
                raise TimeoutError(f"the user did not answer within {timeout:g} s")
            try:
                await asyncio.wait_for(new_turn.wait(), left)
            except asyncio.TimeoutError:
                pass

    session.on("conversation_item_added", on_item)
    try:
        instructions = call.text("ask", question=question)
        for _ in range(MAX_ASKS):
            seen = len(turns)
            handle = session.generate_reply(instructions=instructions, tool_choice="none")
            await until(lambda seen=seen: len(turns) > seen)
            try:
                await asyncio.wait_for(handle.wait_for_playout(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise TimeoutError(f"the question did not play within {timeout:g} s") from None
            if heard_text(handle):
                return turns[seen]
            logger.debug(
                "the user spoke before the question was heard, asking again",
                extra={"function": call.function_call.name, "call_id": call.call_id},
            )
        raise TimeoutError(f"the question was not heard after {MAX_ASKS} tries")
    finally:
        session.off("conversation_item_added", on_item)
