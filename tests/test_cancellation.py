"""Cancelling background calls: by the model, by the duplicate policy, by handoff and close.

Every cancellation of a call that already answered leaves a `_cancelled` record, so the
model never presents a result for work that stopped.
"""

from __future__ import annotations

import asyncio

import pytest

from livekit.agents import Agent, AgentSession, function_tool
from livekit.plugins.asynctools import (
    CANCEL_REASON_CLOSED,
    CANCEL_REASON_REPLACED,
    CANCEL_REASON_REQUESTED,
    CANCELLED_TEMPLATE,
    AsyncRunContext,
    AsyncToolset,
)
from livekit.plugins.asynctools.session_scope import existing_scope
from livekit.plugins.asynctools.testing import (
    ConversationLog,
    Reply,
    ScriptedLLM,
    ToolCall,
    text_session,
)

from .travel import Flights, Gates, TravelAgent, call, output_of, respond_to, results_requests


def cancelled(call_id: str, reason: str) -> str:
    return CANCELLED_TEMPLATE.format(function_name="book_flight", call_id=call_id, reason=reason)


async def test_the_model_cancels_a_running_call_and_is_told_it_stopped() -> None:
    """`cancel_task` stops the call; its result never comes and a record says why."""
    gates = Gates()
    flights = Flights(gates)
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "list": call("get_running_tasks", "l1"),
                "cancel it": call("cancel_task", "x1", call_id="c1"),
            }
        )
    )
    async with text_session(TravelAgent(tools=[flights]), llm=model) as (session, log):
        await session.run(user_input="book")
        await session.run(user_input="list")
        listing = output_of(model.requests[-1], "l1")
        await session.run(user_input="cancel it")
        await log.wait_for(lambda _: any("c1_cancelled" in h for h in log.heard))
        gates.open("found", "booked")
        await asyncio.sleep(0)

    assert "'call_id': 'c1'" in listing and "book_flight" in listing
    assert output_of(model.requests[-1], "x1") == "Task c1 cancelled."
    record = output_of(results_requests(model.requests)[-1], "c1_cancelled")
    assert record == cancelled("c1", CANCEL_REASON_REQUESTED)
    assert flights.finished == []


async def test_cancel_task_refuses_an_unknown_call_id() -> None:
    """An id that is not running is an error the model can read, and nothing changes."""
    model = ScriptedLLM(responder=respond_to({"cancel": call("cancel_task", "x1", call_id="c9")}))
    async with text_session(TravelAgent(tools=[Flights(Gates())]), llm=model) as (session, _):
        await session.run(user_input="cancel")

    out = next(o for o in model.requests[-1].outputs() if o.call_id == "x1")
    assert out.is_error
    assert "No running task has call_id c9" in out.output


async def test_cancel_task_refuses_a_call_that_disallowed_interruptions() -> None:
    """A call that made itself uninterruptible cannot be cancelled, and keeps running."""
    gates = Gates()

    @function_tool
    async def pay(ctx: AsyncRunContext, amount: int) -> str:
        """Charge the card."""
        ctx.disallow_interruptions()
        await ctx.update("Charging the card")
        await gates.wait("paid")
        return "paid"

    model = ScriptedLLM(
        responder=respond_to(
            {"pay": call("pay", "p1", amount=5), "cancel": call("cancel_task", "x1", call_id="p1")}
        )
    )
    agent = TravelAgent(tools=[AsyncToolset(id="pay", tools=[pay])])
    async with text_session(agent, llm=model) as (session, log):
        await session.run(user_input="pay")
        await session.run(user_input="cancel")
        refusal = next(o for o in model.requests[-1].outputs() if o.call_id == "x1")
        gates.open("paid")
        await log.wait_for(lambda _: any("p1_finished" in h for h in log.heard))

    assert refusal.is_error and "disallowed interruptions" in refusal.output


async def test_replace_cancels_the_running_call_and_runs_the_new_one() -> None:
    """Under `replace`, a second call cancels the first (recorded) and runs."""
    gates = Gates()
    flights = Flights(gates, on_duplicate_call="replace")
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "paris instead": call("book_flight", "c2", destination="Paris"),
            }
        )
    )
    async with text_session(TravelAgent(tools=[flights]), llm=model) as (session, log):
        await session.run(user_input="book")
        await session.run(user_input="paris instead")
        gates.open("found", "booked")
        await log.wait_for(lambda _: any("c2_finished" in h for h in log.heard))

    seen = model.requests[-1]
    assert output_of(seen, "c1_cancelled") == cancelled("c1", CANCEL_REASON_REPLACED)
    assert "FL-PARIS" in output_of(seen, "c2_finished")
    assert flights.finished == ["Paris"]


async def test_replace_within_one_response_answers_the_replaced_call_at_once() -> None:
    """Under `replace`, one response calling the tool twice cancels the first call before
    it ever ran: core's call is answered with the cancellation (nothing hangs), the
    second call runs, and nothing of the first is left registered."""
    gates = Gates()
    flights = Flights(gates, on_duplicate_call="replace")
    twice = Reply(
        tool_calls=[
            ToolCall("book_flight", {"destination": "Tokyo"}, call_id="c1"),
            ToolCall("book_flight", {"destination": "Paris"}, call_id="c2"),
        ]
    )
    model = ScriptedLLM(responder=respond_to({"book twice": twice}))
    agent = TravelAgent(tools=[flights])
    async with text_session(agent, llm=model) as (session, log):
        await asyncio.wait_for(session.run(user_input="book twice"), timeout=5)
        scope = existing_scope(session)
        assert scope is not None and [c.call_id for c in scope.calls] == ["c2"]
        gates.open("found", "booked")
        await log.wait_for(lambda _: any("c2_finished" in h for h in log.heard))

    answered = next(r for r in model.requests if "c1" in r.output_ids())
    assert output_of(answered, "c1") == cancelled("c1", CANCEL_REASON_REPLACED)
    assert "c1_cancelled" not in model.requests[-1].output_ids()
    assert flights.finished == ["Paris"]


async def test_agent_scoped_calls_are_cancelled_at_handoff_and_the_next_agent_knows() -> None:
    """A toolset on `Agent(tools=...)` closes with its agent: the next agent's chat holds a
    `_cancelled` record for each call that was running."""
    gates = Gates()
    model = ScriptedLLM(
        responder=respond_to({"book": call("book_flight", "c1", destination="Rome")})
    )
    next_agent = Agent(instructions="You are the support agent.")
    async with text_session(TravelAgent(tools=[Flights(gates)]), llm=model) as (session, log):
        await session.run(user_input="book")
        session.update_agent(next_agent)
        await log.wait_for(lambda _: any("c1_cancelled" in h for h in log.heard))

    record = next(
        i
        for i in next_agent.chat_ctx.items
        if getattr(i, "call_id", "") == "c1_cancelled" and i.type == "function_call_output"
    )
    assert record.output == cancelled("c1", CANCEL_REASON_CLOSED)


async def test_session_scoped_calls_survive_handoff_and_reach_the_next_agent() -> None:
    """A toolset on `AgentSession(tools=...)` keeps running across a handoff."""
    gates = Gates()
    flights = Flights(gates)
    model = ScriptedLLM(
        responder=respond_to({"book": call("book_flight", "c1", destination="Oslo")})
    )
    session: AgentSession = AgentSession(llm=model, tools=[flights])
    log = ConversationLog(session)
    next_agent = Agent(instructions="You are the support agent.")
    await session.start(TravelAgent(tools=[]))
    try:
        await session.run(user_input="book")
        session.update_agent(next_agent)
        gates.open("found", "booked")
        await log.wait_for(lambda _: any("c1_finished" in h for h in log.heard))
    finally:
        await session.aclose()

    result = next(
        i
        for i in next_agent.chat_ctx.items
        if i.type == "function_call_output" and i.call_id == "c1_finished"
    )
    assert "FL-OSLO" in result.output


async def test_closing_the_session_cancels_its_calls_and_leaves_nothing_behind() -> None:
    """Close cancels every running call; no task and no session state outlives it."""
    gates = Gates()
    flights = Flights(gates)
    model = ScriptedLLM(
        responder=respond_to({"book": call("book_flight", "c1", destination="Lima")})
    )
    async with text_session(TravelAgent(tools=[flights]), llm=model) as (session, _):
        await session.run(user_input="book")
        scope = existing_scope(session)
        assert scope is not None and [c.call_id for c in scope.calls] == ["c1"]
        running = scope.calls[0]

    await asyncio.sleep(0)
    assert running.done()
    assert existing_scope(session) is None
    assert flights.finished == []
    assert any(
        i.type == "function_call_output" and i.call_id == "c1_cancelled"
        for i in session.history.items
    )


@pytest.mark.parametrize("mode", ["reject", "confirm"])
async def test_duplicate_calls_are_refused_with_the_running_call(mode: str) -> None:
    """`reject` and `confirm` refuse a second call and show the model the running one;
    under `confirm`, re-calling with confirm_duplicate=true runs it."""
    gates = Gates()
    flights = Flights(gates, on_duplicate_call=mode)  # type: ignore[arg-type]
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", "c1", destination="Tokyo"),
                "again": call("book_flight", "c2", destination="Tokyo"),
                "yes really": call(
                    "book_flight", "c3", destination="Tokyo", confirm_duplicate=True
                ),
            }
        )
    )
    async with text_session(TravelAgent(tools=[flights]), llm=model) as (session, log):
        await session.run(user_input="book")
        await session.run(user_input="again")
        refusal = output_of(model.requests[-1], "c2")
        if mode == "confirm":
            await session.run(user_input="yes really")
        gates.open("found", "booked")
        await log.wait_for(lambda _: any("c1_finished" in h for h in log.heard))
        if mode == "confirm":
            await log.wait_for(lambda _: any("c3_finished" in h for h in log.heard))

    assert "already running" in refusal and '"call_id": "c1"' in refusal
    assert ("confirm_duplicate" in refusal) == (mode == "confirm")
    assert flights.finished == (["Tokyo", "Tokyo"] if mode == "confirm" else ["Tokyo"])
