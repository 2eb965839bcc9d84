"""The offline demo's conversation, the same in every mode: the user's lines and turns.

The user asks for a flight and a hotel at once, asks for the flight again while it is
still being booked, asks what is running, agrees to pay when the agent asks, and
cancels the hotel once the flight's confirmation email is mentioned. Each mode brings
its own way of saying a line (:func:`converse` takes it as ``say``); the waits here are
the user's: they speak once the agent has been quiet a moment.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent import FlightAgent
from flights import TravelBackend

USER_LINES = [
    "Book a flight from Paris to Tokyo on December 3rd.",
    "Also reserve a hotel for 4 nights.",
    "Book that flight again.",
    "No. What's running?",
]
CANCEL_LINE = "Cancel the hotel."
YES_LINE = "Yes, pay it."
PAYMENT_QUESTION = "Shall I pay"
FILLER_LINE = "Still booking your flight"
# how long the user waits, once the agent is quiet, before speaking (and checks again)
REACTION_TIME = 0.3


async def converse(session: Any, backend: TravelBackend, say: Any) -> None:
    """The conversation itself, the same in every mode; closes ``session`` at the end.

    ``say(choose)`` is the user: once the agent has been quiet a moment, they say the
    line ``choose()`` gives (nothing for None). They say their lines in turn, and agree
    to pay whenever the agent has just asked.

    Args:
        session: The mode's agent session, not started yet.
        backend: The travel backend the flight agent books through.
        say: The mode's way for the user to say a line; returns whether one was said.

    Raises:
        TimeoutError: The conversation did not reach its next step in time.
    """
    await session.start(FlightAgent(backend=backend))
    lines = list(USER_LINES)

    def next_line() -> str | None:
        if asked_to_pay(session):
            return YES_LINE
        return lines.pop(0) if lines else None

    try:
        while lines or not backend.emails:
            if not await say(next_line):
                await until(lambda: bool(backend.emails) or asked_to_pay(session), timeout=20)
        await until(lambda: heard(session, "emailed"), timeout=10)
        await say(lambda: CANCEL_LINE)
        await until(lambda: heard(session, "hotel search is cancelled"), timeout=10)
    finally:
        await session.aclose()


def asked_to_pay(session: Any) -> bool:
    """Whether the agent asked to pay, and the user has not answered yet.

    Args:
        session: The agent session whose history is read.
    """
    for item in reversed(session.history.items):
        role = getattr(item, "role", None)
        if role == "user":
            return False
        if role == "assistant" and PAYMENT_QUESTION in (item.text_content or ""):
            return True
    return False


def answered(session: Any, line: str) -> bool:
    """Whether the user's ``line`` was transcribed and committed, and the agent answered it.

    Args:
        session: The agent session whose history is read.
        line: The user's line, as said.
    """
    items = session.history.items
    said = [
        i
        for i, item in enumerate(items)
        if getattr(item, "role", None) == "user" and (item.text_content or "").strip() == line
    ]
    return bool(said) and any(getattr(i, "role", None) == "assistant" for i in items[said[-1] :])


def heard(session: Any, text: str) -> bool:
    """Whether the agent has said something containing ``text``.

    Args:
        session: The agent session whose history is read.
        text: What to look for in the agent's replies.
    """
    return any(
        getattr(i, "role", None) == "assistant" and text in (i.text_content or "")
        for i in session.history.items
    )


async def until_quiet_for(quiet: Any, seconds: float, *, timeout: float = 15) -> None:
    """Wait until ``quiet()`` has held for ``seconds`` in a row, as a person would before
    speaking: a reply the agent starts meanwhile is heard out first.

    Args:
        quiet: Whether the conversation is quiet now.
        seconds: How long it must stay quiet.
        timeout: How long to wait for it to become quiet, in all.

    Raises:
        TimeoutError: It was not quiet in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        await until(quiet, timeout=max(deadline - time.monotonic(), 0.1))
        await asyncio.sleep(seconds)
        if quiet():
            return


async def until(predicate: Any, *, timeout: float) -> None:
    """Wait until ``predicate()`` holds, checking every 50 ms.

    Args:
        predicate: What the conversation must reach.
        timeout: How long to wait, in seconds.

    Raises:
        TimeoutError: It did not hold in time.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the conversation did not get there in time")
        await asyncio.sleep(0.05)
