"""Structured progress, lifecycle events, timeouts and soft deadlines, as the model and the
user see them (text-only session)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from livekit.agents import function_tool
from livekit.plugins.asynctools import (
    CANCELLED_TEMPLATE,
    STILL_RUNNING_TEMPLATE,
    TIMED_OUT_TEMPLATE,
    AsyncRunContext,
    AsyncToolset,
    TaskEnded,
    TaskEvents,
    TaskUpdated,
    task_events,
    tool_policy,
)
from livekit.plugins.asynctools.testing import ScriptedLLM, text_session

from .travel import Gates, TravelAgent, call, output_of, respond_to, results_requests

EVENT_NAMES = (
    "task_started",
    "task_updated",
    "reply_scheduled",
    "reply_heard",
    "reply_interrupted",
    "reply_not_given",
    "task_ended",
)


def record_events(emitter: TaskEvents) -> list[tuple[str, Any]]:
    """Every event ``emitter`` emits, as ``(name, payload)``, in order."""
    seen: list[tuple[str, Any]] = []
    for name in EVENT_NAMES:
        emitter.on(name, lambda ev, name=name: seen.append((name, ev)))
    return seen


async def refused(ctx: AsyncRunContext, bad: dict[str, Any]) -> str:
    """The ValueError message of an update with ``bad`` progress values ("" if none)."""
    try:
        await ctx.update("Bad progress", **bad)
    except ValueError as e:
        return str(e)
    return ""


def heard(log: Any, text: str) -> bool:
    return text in log.heard


def timed_out(function_name: str, call_id: str, timeout: float) -> str:
    return TIMED_OUT_TEMPLATE.format(function_name=function_name, call_id=call_id, timeout=timeout)


def search_toolset(gates: Gates) -> AsyncToolset:
    @function_tool
    async def search(ctx: AsyncRunContext, query: str) -> str:
        """Search the catalogue."""
        await ctx.update(f"Searching for {query}", progress=0.4, stage="search", seconds_left=12)
        await gates.wait("ranking")
        await ctx.update("Ranking the results", stage="ranking")
        await gates.wait("done")
        return "3 results"

    return AsyncToolset(id="catalogue", tools=[search])


async def test_structured_progress_reaches_the_model_and_the_task_listing() -> None:
    """`ctx.update(progress=, stage=, seconds_left=)` adds "40% done, stage: search, about
    12 s left" to the update the model reads; `get_running_tasks` lists the three fields,
    and a later update that gives only a stage keeps the fraction and the estimate."""
    gates = Gates()
    model = ScriptedLLM(
        responder=respond_to(
            {
                "search": call("search", "s1", query="lamps"),
                "list": call("get_running_tasks", "l1"),
                "list again": call("get_running_tasks", "l2"),
            }
        )
    )
    async with text_session(TravelAgent(tools=[search_toolset(gates)]), llm=model) as (s, log):
        await s.run(user_input="search")
        answer = output_of(model.requests[-1], "s1")
        await s.run(user_input="list")
        first_listing = output_of(model.requests[-1], "l1")
        gates.open("ranking")
        await log.wait_for(lambda _: heard(log, "Update: s1_update_1"))
        update = output_of(model.requests[-1], "s1_update_1")
        await s.run(user_input="list again")
        second_listing = output_of(model.requests[-1], "l2")
        gates.open("done")
        await log.wait_for(lambda _: heard(log, "Update: s1_finished"))

    assert "Searching for lamps (40% done, stage: search, about 12 s left)" in answer
    assert "'fraction': 0.4" in first_listing
    assert "'stage': 'search'" in first_listing
    assert "'seconds_left': 12.0" in first_listing
    assert "Ranking the results (stage: ranking)" in update
    assert "'fraction': 0.4" in second_listing
    assert "'stage': 'ranking'" in second_listing
    assert "'seconds_left': 12.0" in second_listing
    assert log.heard == [
        "ack s1",
        "ack l1",
        "Update: s1_update_1",
        "ack l2",
        "Update: s1_finished",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"progress": 1.5},
        {"progress": -0.1},
        {"progress": float("nan")},
        {"progress": True},
        {"stage": ""},
        {"seconds_left": -1},
    ],
    ids=[
        "progress>1",
        "progress<0",
        "progress=nan",
        "progress=bool",
        "empty_stage",
        "negative_eta",
    ],
)
async def test_bad_progress_values_raise_where_they_are_given_and_the_call_goes_on(
    bad: dict[str, Any],
) -> None:
    """A bad progress value raises ValueError inside the tool, before and after the first
    update; nothing is recorded for it, and the call goes on to deliver its result."""
    gates = Gates()
    errors: list[str] = []

    @function_tool
    async def search(ctx: AsyncRunContext, query: str) -> str:
        """Search the catalogue."""
        errors.append(await refused(ctx, bad))  # before the first update
        await ctx.update(f"Searching for {query}")
        errors.append(await refused(ctx, bad))  # after it
        await gates.wait("done")
        return "3 results"

    toolset = AsyncToolset(id="catalogue", tools=[search])
    updates = record_events(toolset.events)
    model = ScriptedLLM(responder=respond_to({"search": call("search", "s1", query="lamps")}))
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="search")
        answer = output_of(model.requests[-1], "s1")
        gates.open("done")
        await log.wait_for(lambda _: heard(log, "Update: s1_finished"))

    assert len(errors) == 2 and all(next(iter(bad)) in e for e in errors)
    assert "Searching for lamps" in answer and "Bad progress" not in answer
    assert results_requests(model.requests)[-1].output_ids() == ["s1", "s1_finished"]
    assert output_of(model.requests[-1], "s1_finished") == "3 results"
    assert [ev.message for name, ev in updates if name == "task_updated"] == ["Searching for lamps"]
    assert log.heard == ["ack s1", "Update: s1_finished"]


def export_toolset(gates: Gates) -> AsyncToolset:
    @function_tool
    async def export(ctx: AsyncRunContext) -> str:
        """Export the data."""
        await ctx.update("Exporting")
        await gates.wait("half")
        await ctx.update("Half done", progress=0.5)
        await gates.wait("done")
        return "exported"

    return AsyncToolset(id="data", tools=[export])


async def test_lifecycle_events_follow_one_call_in_order_on_the_toolset_and_the_session() -> None:
    """One call with a first update, a later update with progress and a result emits, on
    its toolset and on its session: task_started, task_updated (the call id, then
    `_update_1` with its progress), the reply for the update scheduled then heard, and
    task_ended "done" recorded as `_finished`."""
    gates = Gates()
    toolset = export_toolset(gates)
    on_toolset = record_events(toolset.events)
    model = ScriptedLLM(responder=respond_to({"export": call("export", "e1")}))
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        on_session = record_events(task_events(session))
        await session.run(user_input="export")
        gates.open("half")
        await log.wait_for(lambda _: heard(log, "Update: e1_update_1"))
        gates.open("done")
        await log.wait_for(lambda _: heard(log, "Update: e1_finished"))

    assert on_session == on_toolset
    assert [name for name, _ in on_session] == [
        "task_started",
        "task_updated",
        "task_updated",
        "reply_scheduled",
        "reply_heard",
        "task_ended",  # the result is recorded, then its own reply is asked for
        "reply_scheduled",
        "reply_heard",
    ]
    started = on_session[0][1]
    assert (started.call_id, started.function_name, started.toolset_id) == ("e1", "export", "data")
    first, second = (ev for name, ev in on_session if name == "task_updated")
    assert isinstance(first, TaskUpdated) and isinstance(second, TaskUpdated)
    assert (first.update_id, first.message, first.progress.fraction) == ("e1", "Exporting", None)
    assert (second.update_id, second.message) == ("e1_update_1", "Half done")
    assert second.progress.fraction == 0.5
    replies = [ev for name, ev in on_session if name.startswith("reply_")]
    assert [r.update_ids for r in replies] == [["e1_update_1"]] * 2 + [["e1_finished"]] * 2
    assert [r.status for r in replies] == ["scheduled", "heard"] * 2
    (ended,) = (ev for name, ev in on_session if name == "task_ended")
    assert isinstance(ended, TaskEnded)
    assert (ended.call_id, ended.status, ended.record_id) == ("e1", "done", "e1_finished")
    assert ended.message == "exported"
    assert log.heard == ["ack e1", "Update: e1_update_1", "Update: e1_finished"]


async def test_a_sessions_events_never_show_another_sessions_calls() -> None:
    """Two sessions in one process: the listeners of one, on the session and on its
    toolset, never see the calls of the other."""
    gates = Gates()
    toolset_a, toolset_b = export_toolset(gates), export_toolset(gates)
    on_toolset_b = record_events(toolset_b.events)
    model_a = ScriptedLLM(responder=respond_to({"export": call("export", "a1")}))
    model_b = ScriptedLLM(responder=respond_to({}))
    async with text_session(TravelAgent(tools=[toolset_a]), llm=model_a) as (session_a, log_a):
        async with text_session(TravelAgent(tools=[toolset_b]), llm=model_b) as (session_b, _):
            on_a = record_events(task_events(session_a))
            on_b = record_events(task_events(session_b))
            await session_a.run(user_input="export")
            gates.open("half", "done")
            await log_a.wait_for(lambda _: any("a1_finished" in h for h in log_a.heard))

    assert {ev.call_id for name, ev in on_a if name.startswith("task_")} == {"a1"}
    assert on_b == [] and on_toolset_b == []
    assert task_events(session_a) is not task_events(session_b)


async def test_a_listener_holding_its_session_lets_the_closed_session_go() -> None:
    """A ``task_events`` listener that refers to its session, as most do, does not keep
    the session alive once it closed: a worker hosting session after session in one
    process does not grow with each (it did: every session, its tasks and its history
    stayed in memory)."""
    seen: list[int] = []

    async def converse() -> weakref.ref[Any]:
        gates = Gates()
        model = ScriptedLLM(responder=respond_to({"export": call("export", "a1")}))
        agent = TravelAgent(tools=[export_toolset(gates)])
        async with text_session(agent, llm=model) as (session, log):
            history = lambda _: seen.append(len(session.history.items))  # noqa: E731
            task_events(session).on("task_started", history)
            await session.run(user_input="export")
            gates.open("half", "done")
            await log.wait_for(lambda _: any("a1_finished" in h for h in log.heard))
        return weakref.ref(session)

    closed = await converse()
    for _ in range(20):  # what the session's close scheduled finishes first
        await asyncio.sleep(0)
    gc.collect()

    assert len(seen) == 1 and closed() is None


def blocking_toolset(gates: Gates, **options: Any) -> AsyncToolset:
    @tool_policy(timeout=0.2)
    @function_tool
    async def slow(ctx: AsyncRunContext, before_update: bool) -> str:
        """A slow lookup."""
        if before_update:
            await gates.wait("never")
        await ctx.update("Looking it up")
        await gates.wait("never")
        return "found"

    return AsyncToolset(id="slow", tools=[slow], **options)


async def test_a_call_past_its_timeout_is_stopped_and_recorded_as_timed_out() -> None:
    """`@tool_policy(timeout=0.2)`: a call that runs past it is stopped, the model gets a
    `_timed_out` record with the timed-out text (not the cancelled one), and task_ended
    says "timed_out"."""
    gates = Gates()
    toolset = blocking_toolset(gates)
    events = record_events(toolset.events)
    model = ScriptedLLM(responder=respond_to({"look": call("slow", "t1", before_update=False)}))
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="look")
        await log.wait_for(lambda _: heard(log, "Update: t1_timed_out"))

    record = output_of(results_requests(model.requests)[-1], "t1_timed_out")
    assert record == timed_out("slow", "t1", 0.2)
    assert "ran out of time after 0.2 seconds" in record
    assert record != CANCELLED_TEMPLATE.format(function_name="slow", call_id="t1", reason="")
    (ended,) = (ev for name, ev in events if name == "task_ended")
    assert (ended.status, ended.record_id, ended.message) == ("timed_out", "t1_timed_out", record)
    assert log.heard == ["ack t1", "Update: t1_timed_out"]


async def test_a_timeout_before_the_first_update_is_the_calls_own_answer() -> None:
    """A call that times out before its first update answers the model's call itself
    with the timed-out text; no separate record is added."""
    gates = Gates()
    toolset = blocking_toolset(gates)
    events = record_events(toolset.events)
    model = ScriptedLLM(responder=respond_to({"look": call("slow", "t1", before_update=True)}))
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="look")

    assert output_of(model.requests[-1], "t1") == timed_out("slow", "t1", 0.2)
    assert "t1_timed_out" not in model.requests[-1].output_ids()
    assert results_requests(model.requests) == []
    (ended,) = (ev for name, ev in events if name == "task_ended")
    assert (ended.status, ended.record_id) == ("timed_out", "t1")
    assert log.heard == ["ack t1"]


async def test_a_tool_overrides_or_disables_its_toolsets_timeout() -> None:
    """A toolset timeout applies to its tools unless a tool sets its own: `timeout=None`
    turns it off (the call outlives it and finishes) and a number replaces it."""
    gates = Gates()

    @function_tool
    async def fetch(ctx: AsyncRunContext) -> str:
        """Fetch with the toolset's timeout."""
        await ctx.update("Fetching")
        await gates.wait("never")
        return "fetched"

    @tool_policy(timeout=None)
    @function_tool
    async def archive(ctx: AsyncRunContext) -> str:
        """Archive, with no time limit."""
        await ctx.update("Archiving")
        await gates.wait("archived")
        return "archived"

    @tool_policy(timeout=0.3)
    @function_tool
    async def scan(ctx: AsyncRunContext) -> str:
        """Scan, with a time limit of its own."""
        await ctx.update("Scanning")
        await gates.wait("never")
        return "scanned"

    toolset = AsyncToolset(id="files", tools=[fetch, archive, scan], timeout=0.15)
    model = ScriptedLLM(
        responder=respond_to(
            {
                "go": call("fetch", "f1"),
                "archive": call("archive", "a1"),
                "scan": call("scan", "s1"),
            }
        )
    )
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="go")
        await session.run(user_input="archive")
        await session.run(user_input="scan")
        await log.wait_for(lambda _: heard(log, "Update: s1_timed_out"))
        gates.open("archived")
        await log.wait_for(lambda _: heard(log, "Update: a1_finished"))

    last = model.requests[-1]
    assert output_of(last, "f1_timed_out") == timed_out("fetch", "f1", 0.15)
    assert output_of(last, "s1_timed_out") == timed_out("scan", "s1", 0.3)
    assert output_of(last, "a1_finished") == "archived"
    assert "a1_timed_out" not in last.output_ids()


async def test_a_soft_deadline_tells_the_model_the_call_is_still_running() -> None:
    """`soft_deadline=0.2`: past it, an `_update_N` with the still-running text is spoken,
    and the call keeps running and delivers its result as usual."""
    gates = Gates()

    @tool_policy(soft_deadline=0.2)
    @function_tool
    async def report(ctx: AsyncRunContext) -> str:
        """Build the report."""
        await ctx.update("Building the report")
        await gates.wait("done")
        return "report ready"

    toolset = AsyncToolset(id="reports", tools=[report])
    events = record_events(toolset.events)
    model = ScriptedLLM(responder=respond_to({"report": call("report", "r1")}))
    async with text_session(TravelAgent(tools=[toolset]), llm=model) as (session, log):
        await session.run(user_input="report")
        await log.wait_for(lambda _: heard(log, "Update: r1_update_1"))
        still = output_of(model.requests[-1], "r1_update_1")
        gates.open("done")
        await log.wait_for(lambda _: heard(log, "Update: r1_finished"))

    prefix = STILL_RUNNING_TEMPLATE.split("{elapsed", 1)[0].format(
        function_name="report", call_id="r1"
    )
    assert still.startswith(prefix) and "still working" in still
    assert output_of(model.requests[-1], "r1_finished") == "report ready"
    assert log.heard == ["ack r1", "Update: r1_update_1", "Update: r1_finished"]
    (ended,) = (ev for name, ev in events if name == "task_ended")
    assert ended.status == "done"


async def test_an_idle_session_keeps_no_plugin_listener_on_its_conversation_events() -> None:
    """While a call runs, the plugin watches the conversation (to know when it is free);
    once nothing is pending, it listens to nothing but the session's close: many idle
    sessions in one worker process cost no work per event."""
    from .test_stateful_schedules import _plugin_callback

    def plugin_listeners(session: Any) -> list[str]:
        return sorted(
            f"{name}: {getattr(cb, '__qualname__', cb)}"
            for name, callbacks in session._events.items()
            for cb in callbacks
            if _plugin_callback(cb)
            and name != "close"
            and not getattr(cb, "__module__", "").endswith(".testing.conversation")
        )

    gates = Gates()
    model = ScriptedLLM(responder=respond_to({"export": call("export", "a1")}))
    async with text_session(TravelAgent(tools=[export_toolset(gates)]), llm=model) as (
        session,
        log,
    ):
        await session.run(user_input="export")
        while_running = plugin_listeners(session)
        gates.open("half", "done")
        await log.wait_for(lambda _: any("a1_finished" in h for h in log.heard))
        for _ in range(20):
            await asyncio.sleep(0)
        idle = plugin_listeners(session)

    assert while_running, "the plugin should watch the conversation while a call runs"
    assert idle == []
