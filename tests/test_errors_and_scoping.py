"""Bad input, failing tools, and sessions that must not see each other's calls."""

from __future__ import annotations

from typing import Any

import pytest

from livekit.agents import AgentSession, function_tool, llm
from livekit.plugins.asynctools import (
    NO_RUNNING_TASKS,
    AsyncRunContext,
    AsyncToolset,
)
from livekit.plugins.asynctools.testing import ScriptedLLM, text_session

from .travel import (
    Flights,
    Gates,
    TravelAgent,
    call,
    core_accepts_one_tool_listed_twice,
    output_of,
    respond_to,
    results_requests,
)


def failing_toolset(gates: Gates) -> AsyncToolset:
    @function_tool
    async def charge(ctx: AsyncRunContext, when: str) -> str:
        """Charge the card."""
        if when == "before":
            raise RuntimeError("card number 4111 rejected")
        await ctx.update("Charging")
        await gates.wait("go")
        if when == "tool_error":
            raise llm.ToolError("The card was declined.")
        raise RuntimeError("card number 4111 rejected")

    return AsyncToolset(id="payments", tools=[charge])


@pytest.mark.expected_log_errors("exception occurred while executing tool")
async def test_a_tool_raising_before_its_first_update_is_an_ordinary_tool_error() -> None:
    """Before the first update the call is an ordinary one: core reports the failure and
    the model sees a generic error, never the exception text."""
    model = ScriptedLLM(responder=respond_to({"pay": call("charge", "p1", when="before")}))
    agent = TravelAgent(tools=[failing_toolset(Gates())])
    async with text_session(agent, llm=model) as (session, _):
        await session.run(user_input="pay")

    out = next(o for o in model.requests[-1].outputs() if o.call_id == "p1")
    assert out.is_error and "4111" not in out.output
    assert results_requests(model.requests) == []


@pytest.mark.expected_log_errors("background tool raised an exception")
async def test_a_tool_raising_after_its_first_update_reports_a_generic_error() -> None:
    """After the first update, a crash becomes a `_finished` error record that hides the
    exception text from the model; the failure is logged for the developer."""
    gates = Gates()
    model = ScriptedLLM(responder=respond_to({"pay": call("charge", "p1", when="after")}))
    async with text_session(TravelAgent(tools=[failing_toolset(gates)]), llm=model) as (s, log):
        await s.run(user_input="pay")
        gates.open("go")
        await log.wait_for(lambda _: any("p1_finished" in h for h in log.heard))

    record = next(
        o for o in results_requests(model.requests)[-1].outputs() if o.call_id == "p1_finished"
    )
    assert record.is_error and "4111" not in record.output


async def test_a_tool_error_after_the_first_update_is_shown_to_the_model() -> None:
    """A `ToolError` is meant for the model: its message is the `_finished` record."""
    gates = Gates()
    model = ScriptedLLM(responder=respond_to({"pay": call("charge", "p1", when="tool_error")}))
    async with text_session(TravelAgent(tools=[failing_toolset(gates)]), llm=model) as (s, log):
        await s.run(user_input="pay")
        gates.open("go")
        await log.wait_for(lambda _: any("p1_finished" in h for h in log.heard))

    assert (
        output_of(results_requests(model.requests)[-1], "p1_finished") == "The card was declined."
    )


@pytest.mark.expected_log_errors("error parsing arguments")
async def test_arguments_that_fail_validation_are_refused_before_anything_runs() -> None:
    """Bad arguments never start the tool; the model is told what was wrong."""
    gates = Gates()
    flights = Flights(gates)
    model = ScriptedLLM(responder=respond_to({"book": call("book_flight", "c1", destination=42)}))
    async with text_session(TravelAgent(tools=[flights]), llm=model) as (session, _):
        await session.run(user_input="book")
        gates.open("found", "booked")

    out = next(o for o in model.requests[-1].outputs() if o.call_id == "c1")
    assert out.is_error and "destination" in out.output
    assert flights.finished == []


def test_an_unknown_duplicate_policy_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="on_duplicate_call must be one of"):
        AsyncToolset(id="x", on_duplicate_call="sometimes")  # type: ignore[arg-type]


async def test_sessions_never_see_or_cancel_each_others_calls() -> None:
    """Two sessions in one process, no job context: each lists only its own calls, and
    cancelling the other's call id is refused while that call keeps running."""
    gates = Gates()
    flights_a, flights_b = Flights(gates), Flights(gates)
    model_a = ScriptedLLM(
        responder=respond_to({"book": call("book_flight", "a1", destination="Tokyo")})
    )
    model_b = ScriptedLLM(
        responder=respond_to(
            {
                "list": call("get_running_tasks", "l1"),
                "cancel": call("cancel_task", "x1", call_id="a1"),
            }
        )
    )
    async with text_session(TravelAgent(tools=[flights_a]), llm=model_a) as (session_a, log_a):
        async with text_session(TravelAgent(tools=[flights_b]), llm=model_b) as (session_b, _):
            await session_a.run(user_input="book")
            await session_b.run(user_input="list")
            listing = output_of(model_b.requests[-1], "l1")
            await session_b.run(user_input="cancel")
            refusal = next(o for o in model_b.requests[-1].outputs() if o.call_id == "x1")
        gates.open("found", "booked")
        await log_a.wait_for(lambda _: any("a1_finished" in h for h in log_a.heard))

    assert listing == NO_RUNNING_TASKS
    assert refusal.is_error and "No running task has call_id a1" in refusal.output
    assert flights_a.finished == ["Tokyo"]


@pytest.mark.parametrize("layout", ["side_by_side", "nested"])
async def test_several_toolsets_show_the_task_tools_to_the_model_once(layout: str) -> None:
    """Several AsyncToolsets (on the agent and on the session, or nested in one another):
    `get_running_tasks` and `cancel_task` are offered once, every tool is offered."""
    from .travel import Hotels

    if layout == "side_by_side" and not core_accepts_one_tool_listed_twice():
        pytest.skip("this livekit-agents (1.5.2) refuses a tool listed twice: nest toolsets")
    gates = Gates()
    model = ScriptedLLM(responder=respond_to({}))
    if layout == "side_by_side":
        session_tools: list[Any] = [AsyncToolset(id="extra")]
        agent_tools: list[Any] = [Flights(gates), Hotels(gates)]
    else:
        session_tools = []
        agent_tools = [AsyncToolset(id="travel", tools=[Flights(gates), Hotels(gates)])]
    session: AgentSession = AgentSession(llm=model, tools=session_tools)
    await session.start(TravelAgent(tools=agent_tools))
    try:
        await session.run(user_input="hello")
    finally:
        await session.aclose()

    names = model.requests[-1].tool_names
    assert names.count("get_running_tasks") == 1 and names.count("cancel_task") == 1
    assert {"book_flight", "reserve_hotel", "send_confirmation_email"} <= set(names)


async def test_nested_toolsets_keep_their_own_duplicate_policy_and_close_together() -> None:
    """A merged toolset runs the nested tools with their own policy, and closing it
    cancels their calls."""
    gates = Gates()
    flights = Flights(gates, on_duplicate_call="reject")
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "again": call("book_flight", "c2", destination="Tokyo"),
            }
        )
    )
    agent = TravelAgent(
        tools=[AsyncToolset(id="travel", tools=[flights], on_duplicate_call="allow")]
    )
    async with text_session(agent, llm=model) as (session, _):
        await session.run(user_input="book")
        await session.run(user_input="again")
        refusal = output_of(model.requests[-1], "c2")

    assert "already running" in refusal
    assert flights.finished == []
