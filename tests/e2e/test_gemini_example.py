"""The worked flight-booking example on Gemini Live, end to end.

The agent's realtime session is the real ``google.realtime.RealtimeModel`` client (through
google-genai), talking to the local server's Live API websocket
(``examples/flight_booking/offline/gemini_server.py``) over TLS on 127.0.0.1; the user's
turns are reported by the server's scripted activity detection, as Gemini's would be.
Each test checks what the user heard and what the model was sent, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from livekit.agents import Agent, function_tool
from livekit.plugins.asynctools import AsyncRunContext, AsyncToolset, _compat

from ..travel import Gates
from .example import (
    BOOK_FLIGHT,
    BOOKED,
    EMAILED,
    FLIGHT_ACK,
    FOUND,
    GeminiRun,
    agent_on_local_server,
    complete_lines,
    needs_realtime_client,
)

pytestmark = needs_realtime_client("gemini")


async def test_a_booking_is_acknowledged_from_the_calls_own_response(
    sockets: list[Any],
) -> None:
    """The model calls the flight tool; its first update answers the call (a function
    response under the id Gemini issued), and the model's continuation of that turn is
    the acknowledgement the user hears, while the search still runs."""
    async with agent_on_local_server("gemini", sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        flight = run.call_id("search_and_book_flight")

        assert complete_lines(run.log) == [FLIGHT_ACK]
        assert run.responses_sent() == [flight]
        (response,) = run.live.received("toolResponse")[0]["functionResponses"]
        assert response["name"] == "search_and_book_flight"
        assert "Searching flights from Paris to Tokyo" in response["response"]["output"]
        assert [t.trigger for t in run.live.turns] == ["user", "tool_response"]
        assert run.live.dropped_responses == []
        run.gates.open("found", "booked")


async def test_progress_and_result_reach_the_model_and_are_spoken(
    sockets: list[Any],
) -> None:
    """After the acknowledgement, the flight's progress and then its result are in the
    model's context when it is asked to speak them (as messages naming the call: Gemini
    takes no function response under an id it never issued): the user hears both, and the
    result leads to the confirmation email."""
    async with agent_on_local_server("gemini", sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.heard("Found 3 flights", timeout=3.0)
        # the wrong line, said instead, must not pass for progress
        heard = complete_lines(run.log)
        run.gates.open("booked")
        if heard[:2] == [FLIGHT_ACK, FOUND]:
            await run.heard(EMAILED, timeout=3.0)
        flight = run.call_id("search_and_book_flight")
        assert run.live.dropped_responses == []
        assert complete_lines(run.log) == [FLIGHT_ACK, FOUND, BOOKED, EMAILED]
        assert run.backend.emails == ["FL-129894"]
        progress = run.results_turns()[0].messages
        named = f"Background tool `search_and_book_flight` (call_id {flight}_update_1) reported"
        assert any(
            m["role"] == "user" and m["content"].startswith(named) and "Found 3" in m["content"]
            for m in progress
        ), f"the model was asked about {flight}'s progress without having it"


async def test_background_outputs_reach_gemini_as_content_turns_not_function_responses(
    sockets: list[Any],
) -> None:
    """What the plugin sends Gemini for background outputs: only the call's own first
    update is a function response (under Gemini's id); the progress and the silent fare
    go as content turns naming the call, without ``turnComplete`` (context only, so the
    silent one starts no reply), and nothing is dropped. Then one reply is asked for the
    progress: the instructions as a model turn and a ``"."`` user turn."""
    async with agent_on_local_server("gemini", sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.heard("Found 3 flights")
        flight = run.call_id("search_and_book_flight")

        assert run.responses_sent() == [flight]
        assert run.live.dropped_responses == []
        context = [
            part["text"]
            for m in run.live.received("clientContent")
            if not m.get("turnComplete")
            for turn in m["turns"]
            for part in turn["parts"]
            if turn["role"] == "user" and "text" in part
        ]
        progress = [t for t in context if f"(call_id {flight}_update_1)" in t]
        fare = [t for t in context if f"(call_id {flight}_update_2)" in t]
        assert len(progress) == 1 and "Found 3 flights" in progress[0]
        assert len(fare) == 1 and "Fare of 192 euros locked" in fare[0]
        (ask,) = [m for m in run.live.received("clientContent") if m.get("turnComplete")]
        assert [t["role"] for t in ask["turns"]] == ["model", "user"]
        assert f"{flight}_update_1" in ask["turns"][0]["parts"][0]["text"]
        assert f"{flight}_update_2" not in ask["turns"][0]["parts"][0]["text"]
        assert ask["turns"][1]["parts"] == [{"text": "."}]
        run.gates.open("booked")


def _non_blocking() -> Any:
    from google.genai import types

    return types.Behavior.NON_BLOCKING


def _declared_behaviors(run: GeminiRun) -> dict[str, str | None]:
    (setup,) = run.live.received("setup")
    return {
        d["name"]: d.get("behavior")
        for t in setup.get("tools") or []
        for d in t.get("functionDeclarations") or []
    }


async def test_under_non_blocking_the_booking_answers_when_idle_and_the_flow_holds(
    sockets: list[Any],
) -> None:
    """With ``tool_behavior=NON_BLOCKING`` (Gemini schedules the responses itself): the
    tools are declared non-blocking, the first update goes back as the call's response
    with the default ``WHEN_IDLE`` scheduling (the plugin's ``idle``), Gemini answers it
    once idle, and progress, result and email follow as without it."""
    async with agent_on_local_server("gemini", sockets, tool_behavior=_non_blocking()) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.heard("Found 3 flights", timeout=3.0)
        run.gates.open("booked")
        await run.heard(EMAILED, timeout=3.0)
        flight = run.call_id("search_and_book_flight")

        assert _declared_behaviors(run)["search_and_book_flight"] == "NON_BLOCKING"
        (response,) = [
            r
            for m in run.live.received("toolResponse")
            for r in m["functionResponses"]
            if r.get("id") == flight
        ]
        assert response.get("scheduling", "WHEN_IDLE") == "WHEN_IDLE"
        assert complete_lines(run.log) == [FLIGHT_ACK, FOUND, BOOKED, EMAILED]
        assert run.live.dropped_responses == []


def _maps_silent_outputs() -> bool:
    """Whether this release's core marks an output that wants no reply (1.7+), which
    livekit-plugins-google turns into ``SILENT`` under NON_BLOCKING."""
    from livekit.agents import llm

    return "reply_required" in llm.FunctionCallOutput.model_fields


def _quiet_agent(gates: Gates) -> Any:
    """The example's flight tool, reduced to a silent first update and spoken progress."""

    class QuietTravel(AsyncToolset):
        def __init__(self) -> None:
            super().__init__(id="travel")

        @function_tool
        async def search_and_book_flight(
            self, ctx: AsyncRunContext, origin: str, destination: str, date: str
        ) -> str:
            """Search flights and book the cheapest one."""
            await ctx.update(f"Searching flights to {destination}.", delivery="silent")
            await gates.wait("found")
            await ctx.update(FOUND)
            await gates.wait("booked")
            return "Booked."

    return Agent(instructions="You book flights.", tools=[QuietTravel()])


@pytest.mark.skipif(not _maps_silent_outputs(), reason="this core has no reply_required")
async def test_under_non_blocking_a_silent_first_update_is_a_silent_response(
    sockets: list[Any],
) -> None:
    """A silent first update under NON_BLOCKING reaches Gemini as the call's response with
    ``scheduling: SILENT``: Gemini starts no turn for it and the user hears nothing, until
    the next (idle) update is spoken."""
    async with agent_on_local_server(
        "gemini", sockets, tool_behavior=_non_blocking(), agent=_quiet_agent
    ) as run:
        await run.user_says(BOOK_FLIGHT)
        async with asyncio.timeout(5):
            while not run.live.received("toolResponse"):
                await asyncio.sleep(0.01)
        flight = run.call_id("search_and_book_flight")
        (response,) = run.live.received("toolResponse")[0]["functionResponses"]
        run.gates.open("found")
        await run.heard("Found 3 flights", timeout=3.0)
        run.gates.open("booked")

        assert response["id"] == flight and response["scheduling"] == "SILENT"
        _, recorded_apart = _compat.silent_tool_answer("")
        if recorded_apart:
            # before 1.8 a silent answer is empty (core skips the reply of a tool that
            # returns nothing) and the message follows as its own output, a content turn
            assert response["response"]["output"] == ""
            apart = [
                part["text"]
                for m in run.live.received("clientContent")
                for turn in m["turns"]
                for part in turn["parts"]
                if f"(call_id {flight}_update_0)" in part.get("text", "")
            ]
            assert len(apart) == 1 and "Searching flights to Tokyo" in apart[0]
        else:
            assert "Searching flights to Tokyo" in response["response"]["output"]
        # the only turns: the user's, and the one that speaks the progress
        assert [t.trigger for t in run.live.turns][:2] == ["user", "client_content"]
        assert complete_lines(run.log)[0].startswith("Found 3 flights")
