"""One reply for everything pending, from any toolset; nothing lost while replying."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from livekit.agents import AgentSession, function_tool
from livekit.agents.llm.tool_context import ToolFlag
from livekit.agents.voice import events as voice_events
from livekit.plugins.asynctools import AsyncRunContext, AsyncToolset
from livekit.plugins.asynctools.testing import (
    ConversationLog,
    LLMRequest,
    Reply,
    ScriptedLLM,
    ToolCall,
    text_session,
)

from .travel import (
    RESULTS_MARKER,
    Flights,
    Gates,
    Hotels,
    TravelAgent,
    call,
    core_accepts_one_tool_listed_twice,
    new_results,
    respond_to,
    results_requests,
    weather_tool,
)


async def test_an_update_and_a_result_from_two_toolsets_get_one_reply() -> None:
    """While the agent is busy answering the user, a flight update and a hotel result
    arrive: once it is free, exactly one reply covers both."""
    gates = Gates()
    both = Reply(
        tool_calls=[
            ToolCall("book_flight", {"destination": "Tokyo"}, call_id="c1"),
            ToolCall("reserve_hotel", {"city": "Tokyo"}, call_id="h1"),
        ]
    )
    slow_answer = Reply(text="Let me think about that.", delay=0.2)
    model = ScriptedLLM(responder=respond_to({"trip": both, "and the weather": slow_answer}))
    flights, hotels = Flights(gates), Hotels(gates)
    if core_accepts_one_tool_listed_twice():  # one toolset on the agent, one on the session
        agent, session_tools = TravelAgent(tools=[flights]), [hotels]
    else:  # 1.5.2: merged into one
        agent, session_tools = (
            TravelAgent(tools=[AsyncToolset(id="t", tools=[flights, hotels])]),
            [],
        )
    async with text_session(agent, llm=model, tools=session_tools) as (session, log):
        await session.run(user_input="trip")
        handle = session.generate_reply(user_input="and the weather")
        await log.wait_for(lambda _: any(line.text == "and the weather" for line in log.lines))
        gates.open("found", "hotel")  # both land while the agent is still thinking
        await handle
        await log.wait_for(lambda _: len(results_requests(model.requests)) >= 1)
        await log.wait_for(lambda _: log.heard[-1].startswith("Update:"))

    replies = results_requests(model.requests)
    assert len(replies) == 1
    assert sorted(new_results(replies[0])) == ["c1_update_1", "h1_finished"]
    assert log.heard[-2:] == [
        "Let me think about that.",
        "Update: " + ", ".join(new_results(replies[0])),
    ]


async def test_results_arriving_while_a_reply_is_generated_go_into_the_next_one() -> None:
    """A result that lands while the model is writing the previous deferred reply is not
    lost and not merged into a reply that could not see it: it gets the next reply."""
    gates = Gates()

    def respond(req: LLMRequest) -> Reply | None:
        if req.last_item.type == "message" and req.mentions(RESULTS_MARKER):
            ids = new_results(req)
            if ids == ["c1_update_1"]:
                gates.open("booked")  # the result lands while this reply is generated
                return Reply(text="Update: " + ", ".join(ids), delay=0.1)
        return respond_to({"book": call("book_flight", "c1", destination="Tokyo")})(req)

    model = ScriptedLLM(responder=respond)
    async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (session, log):
        await session.run(user_input="book")
        gates.open("found")
        await log.wait_for(lambda _: "Update: c1_finished" in log.heard)

    assert log.heard == ["ack c1", "Update: c1_update_1", "Update: c1_finished"]
    assert [new_results(r) for r in results_requests(model.requests)] == [
        ["c1_update_1"],
        ["c1_finished"],
    ]


@contextlib.asynccontextmanager
async def _flight_and_hotel_under_way(
    gates: Gates, model: ScriptedLLM, check_weather: Any
) -> AsyncIterator[tuple[AgentSession[Any], ConversationLog]]:
    """A text session in which the flight (c1) and the hotel (h1) calls run, and the
    flight's gates are open."""
    trip = AsyncToolset(id="trip", tools=[Flights(gates), Hotels(gates)])
    agent = TravelAgent(tools=[trip, check_weather])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="book")
        await session.run(user_input="hotel")
        gates.open("found", "booked")
        yield session, log


async def _finish_the_hotel_while_the_weather_runs(
    gates: Gates, weather_running: asyncio.Event, model: ScriptedLLM, log: ConversationLog
) -> list[list[str]]:
    """Once ``check_weather`` runs, let the hotel call finish, then the tool: returns the
    results each deferred-reply request had asked about while the tool ran."""
    await weather_running.wait()
    gates.open("hotel")
    await asyncio.sleep(0.3)
    asked = [new_results(r) for r in results_requests(model.requests)]
    gates.open("weather")
    await log.wait_for(lambda _: "Update: h1_finished" in log.heard)
    return asked


async def test_a_result_waits_while_a_deferred_reply_runs_a_tool() -> None:
    """A deferred reply that calls a tool is not over while the tool runs (core counts the
    agent as idle then): a result that lands meanwhile is spoken after the tool's answer."""
    gates = Gates()
    check_weather, weather_running = weather_tool(gates)

    scripted = respond_to(
        {
            "book": call("book_flight", "c1", destination="Tokyo"),
            "hotel": call("reserve_hotel", "h1", city="Tokyo"),
        }
    )

    def respond(req: LLMRequest) -> Reply | None:
        last = req.last_item
        if (
            last.type == "message"
            and req.mentions(RESULTS_MARKER)
            and "c1_finished" in new_results(req)
        ):
            return call("check_weather", "w1", city="Tokyo")
        return scripted(req)

    model = ScriptedLLM(responder=respond)
    async with _flight_and_hotel_under_way(gates, model, check_weather) as (_, log):
        asked_while_the_tool_ran = await _finish_the_hotel_while_the_weather_runs(
            gates, weather_running, model, log
        )

    assert asked_while_the_tool_ran == [["c1_update_1", "c1_finished"]]
    assert log.heard == ["ack c1", "ack h1", "ack w1", "Update: h1_finished"]


async def test_a_result_waits_while_a_turn_begun_after_a_deferred_reply_runs_a_tool() -> None:
    """The floor goes on watching every speech once it has asked for a deferred reply: a
    user turn that then calls a tool is not over while the tool runs, and a result that
    lands meanwhile is spoken after the tool's answer."""
    gates = Gates()
    check_weather, weather_running = weather_tool(gates)
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "hotel": call("reserve_hotel", "h1", city="Tokyo"),
                "weather": call("check_weather", "w1", city="Tokyo"),
            }
        )
    )
    async with _flight_and_hotel_under_way(gates, model, check_weather) as (session, log):
        await log.wait_for(lambda _: "Update: c1_update_1, c1_finished" in log.heard)
        session.generate_reply(user_input="weather")  # the floor still watches: h1 runs
        asked_while_the_tool_ran = await _finish_the_hotel_while_the_weather_runs(
            gates, weather_running, model, log
        )

    assert asked_while_the_tool_ran == [["c1_update_1", "c1_finished"]]
    assert log.heard == [
        "ack c1",
        "ack h1",
        "Update: c1_update_1, c1_finished",
        "ack w1",
        "Update: h1_finished",
    ]


async def test_a_burst_of_results_is_added_to_the_chat_in_order_and_spoken_once() -> None:
    """Twenty calls finishing in the same instant: every result is in the chat, in call
    order, and one reply speaks them all."""
    gates = Gates()

    @function_tool
    async def poll(ctx: AsyncRunContext, n: int) -> str:
        """Poll a provider."""
        await ctx.update(f"Polling provider {n}")
        await gates.wait("go")
        return f"provider {n}: 2 offers"

    calls = Reply(tool_calls=[ToolCall("poll", {"n": n}, call_id=f"p{n}") for n in range(20)])
    model = ScriptedLLM(responder=respond_to({"poll all": calls}))
    toolset = AsyncToolset(id="providers", tools=[poll], on_duplicate_call="allow")
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="poll all")
        gates.open("go")
        await log.wait_for(lambda _: any(h.startswith("Update:") for h in log.heard))

    (reply,) = results_requests(model.requests)
    finished = [f"p{n}_finished" for n in range(20)]
    assert new_results(reply) == finished
    assert [i for i in reply.output_ids() if i.endswith("_finished")] == finished


async def test_task_tools_and_core_events_on_releases_with_core_async_tools() -> None:
    """On livekit-agents >= 1.6 (core has async tools of its own): a CANCELLABLE tool does
    not make core add its `lk_agents_*` tools, and core's tool events end with the call's
    real end, after its progress updates."""
    flag = getattr(ToolFlag, "CANCELLABLE", None)
    gates = Gates()

    @function_tool(flags=flag) if flag is not None else function_tool
    async def export(ctx: AsyncRunContext) -> str:
        """Export the data."""
        await ctx.update("Exporting")
        await gates.wait("half")
        await ctx.update("Half done")
        await gates.wait("done")
        return "exported"

    model = ScriptedLLM(responder=respond_to({"export": call("export", "e1")}))
    session: AgentSession = AgentSession(llm=model)
    events: list[tuple[str, str | None, str | None]] = []
    session.on(
        "tool_execution_updated",
        lambda ev: events.append(
            (ev.update.type, getattr(ev.update, "id", None), getattr(ev.update, "status", None))
        ),
    )
    log = ConversationLog(session)
    await session.start(TravelAgent(tools=[AsyncToolset(id="data", tools=[export])]))
    try:
        await session.run(user_input="export")
        gates.open("half")
        await log.wait_for(lambda _: "Update: e1_update_1" in log.heard)
        gates.open("done")
        await log.wait_for(lambda _: "Update: e1_finished" in log.heard)
    finally:
        await session.aclose()

    assert not [n for r in model.requests for n in r.tool_names if n.startswith("lk_agents")]
    if flag is not None:  # the events exist since 1.6
        replies = [e for e in events if e[0] == "tool_reply_updated"]
        events = [e for e in events if e[0] != "tool_reply_updated"]
        if hasattr(voice_events, "ToolReplyUpdated"):  # 1.8: our deferred replies too
            assert [status for _, _, status in replies] == ["scheduled", "completed"] * 2
        assert events[-2:] == [
            ("tool_call_updated", "e1_update_1", None),
            ("tool_call_ended", "e1_final", "done"),
        ]
