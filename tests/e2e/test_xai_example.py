"""The worked flight-booking example on xAI's realtime model, end to end.

The agent's realtime session is the real ``xai.realtime.RealtimeModel`` client (an
OpenAI realtime client with xAI's changes), talking to the local xAI endpoint
(``examples/flight_booking/offline/xai_realtime.py``: the OpenAI-protocol server with
xAI's differences) on 127.0.0.1; the user's turns are reported by the server's scripted
turn detection, as xAI's would be. Each test checks what the user heard and what the model
was sent, in order.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from xai_realtime import FORCE_MESSAGE_RULE

from livekit.plugins.asynctools.testing import eventually

from .example import (
    BOOK_FLIGHT,
    BOOKED,
    CANCEL_CONFIRMED,
    CANCEL_HOTEL,
    CANCEL_RESULT,
    EMAILED,
    FLIGHT_ACK,
    FOUND,
    HOLD_ON,
    HOTEL_ACK,
    RESERVE_HOTEL,
    TAKE_YOUR_TIME,
    agent_on_local_server,
    complete_lines,
    named_ids,
    needs_realtime_client,
)

pytestmark = needs_realtime_client("xai")

FILLER = "Still booking your flight, one moment."


async def test_a_booking_is_acknowledged_then_its_progress_and_result_are_spoken(
    sockets: list[Any],
) -> None:
    """On xAI, the user hears the acknowledgement, the progress, then the result and the
    email it leads to; the model receives the call's outputs as ``<call_id>``,
    ``_update_1``, the silent ``_update_2`` and ``_finished``, each results reply naming
    the ones it is about (never the silent one)."""
    async with agent_on_local_server("xai", sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.heard(FOUND)
        run.gates.open("booked")
        await run.heard(EMAILED)

        flight = run.call_id("search_and_book_flight")
        email = run.call_id("send_confirmation_email")
        assert complete_lines(run.log) == [FLIGHT_ACK, FOUND, BOOKED, EMAILED]
        steps = [f"{flight}_update_1", f"{flight}_update_2", f"{flight}_finished"]
        assert run.outputs_sent() == [flight, *steps, email]
        results = run.results_requests()
        assert [named_ids(r.instructions) for r in results] == [
            [f"{flight}_update_1"],
            [f"{flight}_finished"],
        ]
        # xAI takes no per-response tool_choice: the plugin sends none, even for progress
        assert [r.tool_choice for r in results] == [None, None]
        assert results[1].tool_calls == [(email, "send_confirmation_email")]
        assert run.backend.emails == ["FL-129894"]


async def test_a_deferred_reply_the_user_talks_over_is_spoken_again(sockets: list[Any]) -> None:
    """The user starts speaking while the progress is being said: xAI's turn detection
    cuts that reply off, the user's words are answered, then the same progress is asked
    for again and said in full."""
    async with agent_on_local_server("xai", sockets, seconds_per_char=0.01, pace=1.0) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.progress_partly_said()
        await run.user_says(HOLD_ON)
        await run.heard(FOUND)
        run.gates.open("booked")
        await run.heard(EMAILED)

        flight = run.call_id("search_and_book_flight")
        lines = [(line.role, line.text, line.interrupted) for line in run.log.lines]
        cut = lines[2]
        assert cut[0] == "assistant" and cut[2] and FOUND.startswith(cut[1]) and cut[1] != FOUND
        assert lines == [
            ("user", BOOK_FLIGHT, False),
            ("assistant", FLIGHT_ACK, False),
            cut,
            ("user", HOLD_ON, False),
            ("assistant", TAKE_YOUR_TIME, False),
            ("assistant", FOUND, False),
            ("assistant", BOOKED, False),
            ("assistant", EMAILED, False),
        ]
        first, again, _ = run.results_requests()
        assert named_ids(first.instructions) == named_ids(again.instructions)
        assert named_ids(again.instructions) == [f"{flight}_update_1"]
        assert (first.status, first.reason) == ("cancelled", "turn_detected")
        assert again.status == "completed"


async def test_results_of_two_tasks_that_arrive_together_are_spoken_in_one_reply(
    sockets: list[Any],
) -> None:
    """A flight and a hotel run at once; the flight's progress and the hotel's result
    arrive while the user is speaking: after the user's turn is answered, one reply
    covers both, and the model had both outputs before it was asked."""
    async with agent_on_local_server("xai", sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        await run.user_says(RESERVE_HOTEL)
        await run.heard(HOTEL_ACK)
        flight = run.call_id("search_and_book_flight")
        hotel = run.call_id("reserve_hotel")

        speaking = asyncio.create_task(run.user_says(HOLD_ON, duration=0.5))
        await eventually(lambda: run.realtime.user_speaking)
        run.gates.open("found", "hotel")
        await eventually(lambda: f"{hotel}_finished" in run.outputs_sent())
        await speaking
        await run.heard("Found 3 flights")
        run.gates.open("booked")
        await run.heard(EMAILED)

        results = run.results_requests()[0]
        assert named_ids(results.instructions) == [f"{flight}_update_1", f"{hotel}_finished"]
        sent = {m.get("tool_call_id") for m in results.messages if m["role"] == "tool"}
        assert {f"{flight}_update_1", f"{hotel}_finished"} <= sent
        heard = complete_lines(run.log)
        assert heard[:3] == [FLIGHT_ACK, HOTEL_ACK, TAKE_YOUR_TIME]
        assert heard[4:] == [BOOKED, EMAILED]
        assert re.fullmatch(
            re.escape(FOUND) + r" Your hotel is reserved, reference HT-\d{6}\.", heard[3]
        )


async def test_a_cancelled_task_is_recorded_for_the_model_and_its_end_spoken_in_full(
    sockets: list[Any],
) -> None:
    """The user cancels the hotel: the model calls ``cancel_task`` with the hotel's call
    id, the search is recorded as ``<call_id>_cancelled`` in the model's conversation
    before it is asked to speak it, and every reply runs to its end."""
    async with agent_on_local_server("xai", sockets, seconds_per_char=0.01, pace=1.0) as run:
        await run.user_says(RESERVE_HOTEL)
        await run.heard(HOTEL_ACK)
        await run.user_says(CANCEL_HOTEL)
        await run.heard(CANCEL_RESULT)
        hotel, cancel = run.call_id("reserve_hotel"), run.call_id("cancel_task")

        assert [(line.role, line.text, line.interrupted) for line in run.log.lines] == [
            ("user", RESERVE_HOTEL, False),
            ("assistant", HOTEL_ACK, False),
            ("user", CANCEL_HOTEL, False),
            ("assistant", CANCEL_CONFIRMED, False),
            ("assistant", CANCEL_RESULT, False),
        ]
        (call,) = [
            i
            for i in run.realtime.conversation
            if i["type"] == "function_call" and i["call_id"] == cancel
        ]
        assert json.loads(call["arguments"]) == {"call_id": hotel}
        assert list(dict.fromkeys(run.outputs_sent())) == [hotel, f"{hotel}_cancelled", cancel]
        (results,) = run.results_requests()
        assert named_ids(results.instructions) == [f"{hotel}_cancelled"]
        assert f"{hotel}_cancelled" in {
            m.get("tool_call_id") for m in results.messages if m["role"] == "tool"
        }
        assert [r.status for r in run.realtime.responses] == ["completed"] * 5


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
