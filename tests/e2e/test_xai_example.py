"""The worked flight-booking example on xAI's realtime model, end to end.

The agent's realtime session is the real ``xai.realtime.RealtimeModel`` client (an
OpenAI realtime client with xAI's changes), talking to the local xAI endpoint
(``examples/flight_booking/offline/xai_realtime.py``: the OpenAI-protocol server with
xAI's differences) on 127.0.0.1; the user's turns are reported by the server's scripted
turn detection, as xAI's would be. Here is what only xAI's client does; the conversations
it shares with OpenAI's run on both models in ``test_realtime_example.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from xai_realtime import FORCE_MESSAGE_RULE

from .example import (
    BOOK_FLIGHT,
    BOOKED,
    EMAILED,
    FLIGHT_ACK,
    FOUND,
    agent_on_local_server,
    complete_lines,
    needs_realtime_client,
)

pytestmark = needs_realtime_client("xai")

FILLER = "Still booking your flight, one moment."


async def test_the_booking_filler_is_spoken_word_for_word(sockets: list[Any]) -> None:
    """While the booking runs long in silence, the filler line is heard as written, between
    the progress and the result: a reply the model is asked for with the line to say
    (the plugin speaks fillers that way on every realtime model without a TTS)."""
    async with agent_on_local_server("xai", sockets, booking_filler=True) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.heard(FOUND)
        await run.heard(FILLER)
        run.gates.open("booked")
        await run.heard(EMAILED)

        assert complete_lines(run.log) == [FLIGHT_ACK, FOUND, FILLER, BOOKED, EMAILED]
        (filler,) = [r for r in run.realtime.responses if r.text == FILLER]
        assert FILLER in (filler.instructions or "") and filler.tool_calls == []


async def test_say_reaches_xai_as_a_force_message(sockets: list[Any]) -> None:
    """Where the xAI client speaks ``say()`` text itself (``supports_say``), the text goes
    to xAI as a ``force_message`` item: xAI speaks it word for word without asking the
    model, and the user hears it."""
    async with agent_on_local_server("xai", sockets) as run:
        if not getattr(run.session.llm.capabilities, "supports_say", False):
            pytest.skip("this livekit-plugins-xai's realtime model does not speak say() itself")
        await run.session.say(FILLER)
        await run.heard(FILLER)

        (item,) = [e["item"] for e in run.realtime.received("conversation.item.create")]
        assert (item["type"], item["content"]) == (
            "force_message",
            [{"type": "output_text", "text": FILLER}],
        )
        (spoken,) = run.realtime.responses
        assert (spoken.rule, spoken.text, spoken.event_id, spoken.status) == (
            FORCE_MESSAGE_RULE,
            FILLER,
            None,
            "completed",
        )
        assert complete_lines(run.log) == [FILLER]
