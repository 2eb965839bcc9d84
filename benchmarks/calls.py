"""A whole turn with one call, the cost of an update, and the heap of a running call.

These run a real text-only ``AgentSession`` with the plugin's ``ScriptedLLM`` (which
copies every request it is sent, the same for every implementation).
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

from harness import Gate, build_tools, end_timing, start_timing

from livekit.agents import Agent, AgentSession
from livekit.plugins.asynctools.testing import LLMRequest, Reply, ScriptedLLM, ToolCall


def _model(calls: int) -> ScriptedLLM:
    """Answers a user message with ``calls`` calls of ``job``, anything else with "ok"."""

    def respond(req: LLMRequest) -> Reply | None:
        last = req.last_item
        if last.type == "message" and last.role == "user":
            return Reply(
                tool_calls=[ToolCall("job", {"n": i}, call_id=f"j{i}") for i in range(calls)]
            )
        return Reply(text="ok")

    return ScriptedLLM(responder=respond)


async def _session(
    impl: str,
    gate: Gate,
    model: ScriptedLLM,
    *,
    history: int = 0,
    updates: int = 0,
    progress: bool = False,
) -> AgentSession[Any]:
    tools = build_tools(impl, gate, updates=updates, progress=progress)
    agent = Agent(instructions="bench", tools=tools)
    if history:
        ctx = agent.chat_ctx.copy()
        for i in range(history):
            ctx.add_message(role="user" if i % 2 else "assistant", content=f"message {i}")
        await agent.update_chat_ctx(ctx)
    session: AgentSession[Any] = AgentSession(llm=model)
    await session.start(agent)
    return session


async def call_overhead(impl: str) -> float:
    """Seconds for a user turn whose answer is one tool call, from ``session.run()``
    called to its result returned (the reply to the call's first answer is done)."""
    gate, model = Gate(), _model(1)
    session = await _session(impl, gate, model)
    try:
        await session.run(user_input="warm up")
        gate.open()
        await asyncio.sleep(0.01)
        start = start_timing()
        await session.run(user_input="go")
        return time.perf_counter() - start
    finally:
        end_timing()
        await session.aclose()


async def update_cost(impl: str, history: int, burst: int, *, progress: bool = False) -> float:
    """Seconds per update: from the gate opening on a running call with ``history`` chat
    items to its ``burst`` updates in a row all in the agent's chat, divided by ``burst``.

    With ``progress`` the updates carry structured progress (asynctools only)."""
    gate, model = Gate(), _model(1)
    session = await _session(impl, gate, model, history=history, updates=burst, progress=progress)
    try:
        await session.run(user_input="go")
        agent = session.current_agent
        start = start_timing()
        gate.open()
        while True:
            # read the live list: the public read-only view copies it, which would make
            # the check itself grow with the history
            tail = agent._chat_ctx.items[-(2 * burst + 8) :]
            outputs = [
                i.call_id
                for i in tail
                if i.type == "function_call_output" and "update" in i.call_id
            ]
            if len(outputs) >= burst:
                return (time.perf_counter() - start) / burst
            await asyncio.sleep(0)
    finally:
        end_timing()
        await session.aclose()


async def heap_per_task(impl: str, tasks: int) -> float:
    """Bytes of Python heap per running call: from before the user turn that starts
    ``tasks`` calls to after every call has answered (all still running), less the model's
    copies of the requests it was sent."""
    gate, model = Gate(), _model(tasks)
    session = await _session(impl, gate, model)
    try:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await session.run(user_input="go")
        model.requests.clear()  # the harness's copies of the requests are not the tool's
        gc.collect()
        during = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        gate.open()
        return (during - before) / tasks
    finally:
        await session.aclose()
