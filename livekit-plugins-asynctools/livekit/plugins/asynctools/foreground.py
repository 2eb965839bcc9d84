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


async def ask_user(call: BackgroundCall, question: str, *, timeout: float) -> str:
    """Have the agent ask ``question``; return the text of the user's next turn.

    Raises:
        TimeoutError: No user turn within ``timeout`` seconds.
        ValueError: ``question`` is empty.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    session = call.ctx.session
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_item(ev: Any) -> None:
        item = ev.item
        if isinstance(item, llm.ChatMessage) and item.role == "user" and not answer.done():
            answer.set_result(item.text_content or "")

    session.on("conversation_item_added", on_item)
    try:
        instructions = call.text("ask", question=question)
        session.generate_reply(instructions=instructions, tool_choice="none")
        try:
            return await asyncio.wait_for(answer, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the user did not answer within {timeout:g} s") from None
    finally:
        session.off("conversation_item_added", on_item)
