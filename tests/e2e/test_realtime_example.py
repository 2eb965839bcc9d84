"""The worked flight-booking example on the OpenAI realtime protocol, end to end.

The agent's realtime session is the real ``openai.realtime.RealtimeModel`` client, talking
to the local server's realtime websocket (``examples/flight_booking/offline``); the user's
turns are reported by the server's scripted turn detection, as OpenAI's would be. The
conversations xAI's realtime model has too run on both: there the client is the real
``xai.realtime.RealtimeModel`` (an OpenAI realtime client with xAI's changes), talking to
the local xAI endpoint (``offline/xai_realtime.py``: the OpenAI-protocol server with xAI's
differences). Each test checks what the user heard and what the model was sent, in order.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
from typing import Any

import pytest
from demo import Transcript, run_realtime
from openai_server import LocalOpenAIServer
from scenario import flight_scenario

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
    Model,
    agent_on_local_server,
    complete_lines,
    named_ids,
    needs_realtime_client,
)

OPENAI_PROTOCOL = [
    pytest.param("realtime", id="openai"),
    pytest.param("xai", id="xai", marks=needs_realtime_client("xai")),
]
"""The realtime models on the OpenAI realtime protocol."""


@pytest.mark.parametrize("model", OPENAI_PROTOCOL)
async def test_a_booking_is_acknowledged_then_its_progress_and_result_are_spoken(
    sockets: list[Any],
    model: Model,
) -> None:
    """The user hears the acknowledgement, the progress, then the result (and the email it
    leads to); the model receives the call's outputs as ``<call_id>``, ``_update_1``, the
    silent ``_update_2`` and ``_finished``, each results reply naming the ones it is about
    (never the silent one)."""
    async with agent_on_local_server(model, sockets) as run:
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
        # each output of a background step comes with its own function call
        assert [
            e["item"]["call_id"]
            for e in run.realtime.received("conversation.item.create")
            if e["item"]["type"] == "function_call"
        ] == steps
        results = run.results_requests()
        assert [named_ids(r.instructions) for r in results] == [
            [f"{flight}_update_1"],
            [f"{flight}_finished"],
        ]
        if model == "xai":
            # xAI takes no per-response tool_choice: the plugin sends none, even for progress
            assert [r.tool_choice for r in results] == [None, None]
        else:
            # progress is only told; a result may be acted on (here: the email)
            assert results[0].tool_choice == "none"
            assert results[1].tool_choice != "none"
        assert results[1].tool_calls == [(email, "send_confirmation_email")]
        assert run.backend.emails == ["FL-129894"]


@pytest.mark.parametrize("model", OPENAI_PROTOCOL)
async def test_a_deferred_reply_the_user_talks_over_is_spoken_again(
    sockets: list[Any], model: Model
) -> None:
    """The user starts speaking while the progress is being said: that reply is cut off
    (cancelled by the server's turn detection, truncated where playback stopped), the
    user's words are answered, then the same progress is asked for and said in full."""
    # audio is generated in real time, as fast as it plays: the reply is still being
    # generated when the user starts speaking
    async with agent_on_local_server(model, sockets, seconds_per_char=0.01, pace=1.0) as run:
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
        # the model's copy keeps only what the user heard of the cut reply
        (truncate,) = run.realtime.received("conversation.item.truncate")
        assert truncate["audio_end_ms"] > 0
        assert first.text.startswith(cut[1])
        assert again.status == "completed"
        assert run.outputs_sent()[:4] == [
            flight,
            f"{flight}_update_1",
            f"{flight}_update_2",
            f"{flight}_finished",
        ]


@pytest.mark.parametrize("model", OPENAI_PROTOCOL)
async def test_results_of_two_tasks_that_arrive_together_are_spoken_in_one_reply(
    sockets: list[Any],
    model: Model,
) -> None:
    """A flight and a hotel run at once; the flight's progress and the hotel's result
    arrive while the user is speaking: after the user's turn is answered, one reply
    covers both, and the model had both outputs before it was asked."""
    async with agent_on_local_server(model, sockets) as run:
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

        spoken_outputs = [i for i in run.outputs_sent() if i != f"{flight}_update_2"]
        assert spoken_outputs[:4] == [flight, hotel, f"{flight}_update_1", f"{hotel}_finished"]
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


@pytest.mark.parametrize("model", OPENAI_PROTOCOL)
async def test_a_cancelled_task_is_recorded_for_the_model_and_its_end_spoken_in_full(
    sockets: list[Any],
    model: Model,
) -> None:
    """The user cancels the hotel: the model calls ``cancel_task`` with the hotel's call id
    and the hotel search is recorded as ``<call_id>_cancelled``, in the model's
    conversation when it is asked to speak it. That result comes in while the model's
    tool call runs: its reply waits for the model's answer, then is said in full (not
    started at once and cut off by that answer)."""
    # audio is generated in real time, so a reply started too early is still being
    # generated when the answer to cancel_task is asked for, as it would be with OpenAI
    async with agent_on_local_server(model, sockets, seconds_per_char=0.01, pace=1.0) as run:
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
        cancelled = [
            i for i in run.realtime.conversation if i.get("call_id") == f"{hotel}_cancelled"
        ]
        assert [i["type"] for i in cancelled] == ["function_call", "function_call_output"]
        assert "was cancelled on request" in cancelled[1]["output"]
        assert list(dict.fromkeys(run.outputs_sent())) == [hotel, f"{hotel}_cancelled", cancel]
        (results,) = run.results_requests()
        assert named_ids(results.instructions) == [f"{hotel}_cancelled"]
        # the model had the record when it was asked to speak it
        assert f"{hotel}_cancelled" in {
            m.get("tool_call_id") for m in results.messages if m["role"] == "tool"
        }
        # every response ran to its end: none was cut off by another
        assert [r.status for r in run.realtime.responses] == ["completed"] * 5


async def test_the_demo_conversation_reaches_its_outcome_in_realtime_mode() -> None:
    """The demo's realtime conversation (booking, a hotel at the same time, a refused
    duplicate, the task list, a cancellation) reaches its outcome and is heard in order."""
    async with LocalOpenAIServer(flight_scenario(seconds_per_char=0.004)) as server:
        transcript = Transcript()
        problems = await run_realtime(server, transcript, speed=4.0)

    assert problems == []
    agent_lines = [line.split("agent  ", 1)[1] for line in transcript.lines if " agent  " in line]
    flight = [FLIGHT_ACK, FOUND, "Shall I pay 192 euros for LK992?", "Great, paying now."]
    flight += ["Still booking your flight", BOOKED, EMAILED]
    others = [HOTEL_ACK, "That flight is already being booked", "Right now I'm working on:"]
    for story in (flight, [FLIGHT_ACK, *others, CANCEL_CONFIRMED]):
        positions = [
            next((i for i, a in enumerate(agent_lines) if a.startswith(o)), -1) for o in story
        ]
        assert -1 not in positions and positions == sorted(positions), transcript.lines


async def test_progress_and_a_silent_update_reach_the_realtime_model_unspoken() -> None:
    """In the demo's realtime conversation, the flight's structured progress reaches the
    model inside its outputs, and the silent "fare locked" update is in the model's
    conversation while no response is ever asked about it and no line of it is heard."""
    async with LocalOpenAIServer(flight_scenario(seconds_per_char=0.004)) as server:
        transcript = Transcript()
        problems = await run_realtime(server, transcript, speed=4.0)
        outputs = {
            i["call_id"]: i["output"]
            for i in server.realtime.conversation
            if i.get("type") == "function_call_output"
        }
        asked = [
            e.get("response", {}).get("instructions") or ""
            for e in server.realtime.received("response.create")
        ]

    assert problems == []
    flight = next(cid for cid, out in outputs.items() if "Searching flights" in out)
    assert "(0% done, stage: search)" in outputs[flight]
    assert "(50% done, stage: payment)" in outputs[f"{flight}_update_1"]
    assert "Fare of 192 euros locked" in outputs[f"{flight}_update_2"]
    assert not any(f"{flight}_update_2" in a for a in asked)
    assert any(f"{flight}_update_1" in a for a in asked)
    assert not [line for line in transcript.lines if " agent  " in line and "locked" in line]


async def test_closing_while_a_result_reaches_the_model_loses_nothing_and_logs_nothing(
    sockets: list[Any],
) -> None:
    """The session closes while the plugin is adding a progress update to the model's
    conversation: it closes at once, the history keeps the update and the cancellation
    of the call, and nothing is left running or logged as an error (cancelling that
    update inside the provider plugin used to leave a failed future asyncio logs)."""
    async with agent_on_local_server("realtime", sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        for _ in range(3):
            await asyncio.sleep(0)  # the update is on its way to the model, not acknowledged
        closing = time.monotonic()
    closed_in = time.monotonic() - closing
    gc.collect()  # an unretrieved failed future is logged when it is collected
    await asyncio.sleep(0.1)
    gc.collect()

    flight = run.call_id("search_and_book_flight")
    outputs = [i.call_id for i in run.session.history.items if i.type == "function_call_output"]
    assert outputs == [flight, f"{flight}_update_1", f"{flight}_update_2", f"{flight}_cancelled"]
    assert closed_in < 1.0
