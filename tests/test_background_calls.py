"""The life of a background call, as the model and the user see it (text-only session)."""

from __future__ import annotations

from livekit.agents import AgentSession
from livekit.plugins.asynctools import (
    COMPLETED_WITHOUT_RESULT,
    AsyncRunContext,
    AsyncToolset,
)
from livekit.plugins.asynctools.testing import Reply, ScriptedLLM, text_session

from .travel import (
    Flights,
    Gates,
    TravelAgent,
    call,
    new_results,
    output_of,
    respond_to,
    results_requests,
)


async def test_first_update_answers_now_and_later_outputs_are_spoken_when_idle() -> None:
    """The first update is the tool's answer; the progress update and the result each get
    a deferred reply, in order, and the model sees each as its own call/output pair."""
    gates = Gates()
    model = ScriptedLLM(
        responder=respond_to({"book": call("book_flight", "c1", destination="Tokyo")})
    )
    async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (session, log):
        await session.run(user_input="book")
        gates.open("found")
        await log.wait_for_heard(2)
        gates.open("booked")
        heard = await log.wait_for_heard(3)

    assert heard == ["ack c1", "Update: c1_update_1", "Update: c1_finished"]
    first_answer = next(r for r in model.requests if r.last_item.type == "function_call_output")
    assert "Searching flights to Tokyo" in output_of(first_answer, "c1")
    update_reply, result_reply = results_requests(model.requests)
    assert "Found 3 flights" in output_of(update_reply, "c1_update_1")
    assert "FL-TOKYO" in output_of(result_reply, "c1_finished")
    assert result_reply.output_ids() == ["c1", "c1_update_1", "c1_finished"]


async def test_progress_replies_cannot_call_tools_but_result_replies_can() -> None:
    """An update is answered with tool_choice="none"; the reply to a result may act on
    it: here the model emails the booking reference once the flight is booked."""
    gates = Gates()
    agent = TravelAgent(tools=[Flights(gates)])

    def respond(req):  # type: ignore[no-untyped-def]
        answering_results = req.last_item.type == "message" and req.mentions("New results")
        if answering_results and "c1_finished" in new_results(req):
            return call("send_confirmation_email", "c2", booking_reference="FL-TOKYO")
        return respond_to({"book": call("book_flight", "c1", destination="Tokyo")})(req)

    model = ScriptedLLM(responder=respond)
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="book")
        gates.open("found")
        await log.wait_for_heard(2)
        gates.open("booked")
        await log.wait_for(lambda _: agent.emails == ["FL-TOKYO"])
        await log.wait_for_heard(3)

    update_reply, result_reply = results_requests(model.requests)[:2]
    assert update_reply.tool_choice == "none"
    assert result_reply.tool_choice != "none"
    assert "send_confirmation_email" in result_reply.tool_names


async def test_a_final_none_tells_the_model_the_task_finished() -> None:
    """A tool that returns None after its updates still leaves a `_finished` record."""
    gates = Gates()
    model = ScriptedLLM(
        responder=respond_to({"book": call("book_flight", "c1", destination="Nowhere")})
    )
    async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (session, log):
        await session.run(user_input="book")
        gates.open("found", "booked")
        await log.wait_for(lambda _: any("c1_finished" in h for h in log.heard))

    # both outputs arrived before the first answer played out: one reply covers them
    assert log.heard == ["ack c1", "Update: c1_update_1, c1_finished"]
    result_reply = results_requests(model.requests)[-1]
    expected = COMPLETED_WITHOUT_RESULT.format(function_name="book_flight", call_id="c1")
    assert output_of(result_reply, "c1_finished") == expected


async def test_a_result_is_spoken_even_if_the_agent_spoke_after_the_update() -> None:
    """The 1.5 design skipped a result when the agent had spoken since the update; here
    the user talks about something else in between and the result is still delivered."""
    gates = Gates()
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "what about the weather": Reply(text="Sunny.", delay=0.1),
            }
        )
    )
    async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (session, log):
        await session.run(user_input="book")
        gates.open("found")
        await log.wait_for(lambda _: "Update: c1_update_1" in log.heard)
        answer = session.generate_reply(user_input="what about the weather")
        await log.wait_for(lambda _: log.lines[-1].text == "what about the weather")
        gates.open("booked")  # the result lands while the model answers the user
        await answer
        await log.wait_for(lambda _: "Update: c1_finished" in log.heard)

    # the agent's answer is newer than the result: the 1.5 design skipped the result here
    assert log.heard.index("Sunny.") < log.heard.index("Update: c1_finished")


async def test_list_style_toolset_on_the_session_runs_in_the_background() -> None:
    """`AsyncToolset(tools=[...])` passed to `AgentSession(tools=...)` works like a class."""
    gates = Gates()

    from livekit.agents import function_tool

    @function_tool
    async def search_web(ctx: AsyncRunContext, query: str) -> str:
        """Search the web."""
        await ctx.update(f"Searching for {query}")
        await gates.wait("done")
        return f"3 pages about {query}"

    toolset = AsyncToolset(id="web", tools=[search_web])
    model = ScriptedLLM(responder=respond_to({"search": call("search_web", "s1", query="otters")}))
    session: AgentSession = AgentSession(llm=model, tools=[toolset])
    from livekit.plugins.asynctools.testing import ConversationLog

    log = ConversationLog(session)
    await session.start(TravelAgent(tools=[]))
    try:
        await session.run(user_input="search")
        gates.open("done")
        await log.wait_for(lambda _: "Update: s1_finished" in log.heard)
    finally:
        await session.aclose()

    assert "3 pages about otters" in output_of(results_requests(model.requests)[-1], "s1_finished")
    assert model.requests[0].tool_names.count("search_web") == 1


async def test_a_plain_tool_in_an_async_toolset_stays_a_plain_tool() -> None:
    """A tool without an AsyncRunContext parameter answers once, with its return value."""
    from livekit.agents import function_tool

    @function_tool
    async def get_time() -> str:
        """The time."""
        return "noon"

    model = ScriptedLLM(responder=respond_to({"time": call("get_time", "t1")}))
    agent = TravelAgent(tools=[AsyncToolset(id="misc", tools=[get_time])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="time")
        await log.wait_for_heard(1)

    assert output_of(model.requests[-1], "t1") == "noon"
    assert results_requests(model.requests) == []
