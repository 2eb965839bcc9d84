"""Bursts: N background results released together, until the model is asked about them.

Start: the gate that N running calls wait on opens (``time.perf_counter()`` just before
``Gate.open()``); every call then returns its result. End: the session asks the model
for a reply whose chat holds all N results (first thing in ``chat()``, before anything
looks at the request). The calls were started by one model response with N tool calls,
and each answered with its first update, before the start. ``replies`` counts the
result replies asked for up to the end (one: everything reached the model together).

The floor for the cost per result: building the two chat items of one result alone
(:func:`item_cost`), the ``FunctionCall`` and its ``FunctionCallOutput`` as core's
``make_tool_output`` builds them, which every implementation does once per result.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable
from typing import Any

from harness import RESULTS_MARKER, Gate, build_tools, end_timing, start_timing

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.llm import ChatChunk, ChoiceDelta, FunctionToolCall
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from livekit.agents.voice.generation import make_tool_output

_RESULT_SUFFIXES = ("_finished", "_final")  # the plugin and core 1.5; core 1.6+


class BurstLLM(llm.LLM[Any]):
    """A model that answers a user message with N calls of ``job``; it notes when it is
    asked about all their results, and how many result replies were asked for."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls
        self.released = False
        self.replies = 0
        self.covered_at: float | None = None
        self.covered = asyncio.Event()
        self.profiler: Any = None  # enabled by the caller, disabled at the end

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[Any] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **kwargs: Any,
    ) -> llm.LLMStream:
        at = time.perf_counter()
        items = chat_ctx.items
        last = items[-1]
        user_turn = last.type == "message" and last.role == "user"
        if self.released and not self.covered.is_set() and _asks_about_results(items):
            self.replies += 1
            results = sum(
                1
                for i in items
                if i.type == "function_call_output" and i.call_id.endswith(_RESULT_SUFFIXES)
            )
            if results >= self.calls:
                if self.profiler is not None:
                    self.profiler.disable()
                self.covered_at = at
                self.covered.set()
        return _Stream(
            self,
            calls=self.calls if user_turn else 0,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
        )


def _asks_about_results(items: list[llm.ChatItem]) -> bool:
    for item in reversed(items):
        if item.type == "message" and item.role in ("system", "developer"):
            if RESULTS_MARKER in (item.text_content or ""):
                return True
    return False


class _Stream(llm.LLMStream):
    def __init__(self, llm_: BurstLLM, *, calls: int, **kwargs: Any) -> None:
        super().__init__(llm_, **kwargs)
        self._calls = calls

    async def _run(self) -> None:
        if not self._calls:
            delta = ChoiceDelta(role="assistant", content="ok")
            self._event_ch.send_nowait(ChatChunk(id="burst", delta=delta))
            return
        calls = [
            FunctionToolCall(name="job", arguments=json.dumps({"n": i}), call_id=f"j{i}")
            for i in range(self._calls)
        ]
        delta = ChoiceDelta(role="assistant", tool_calls=calls)
        self._event_ch.send_nowait(ChatChunk(id="burst", delta=delta))


async def burst(
    impl: str,
    results: int,
    *,
    profiler: Any = None,
    before_window: Callable[[], None] | None = None,
    history: int = 0,
) -> tuple[float, int]:
    """Seconds from N results released together to the reply that covers them all, and
    the result replies asked for by then.

    ``profiler`` (``enable()``, ``disable()``) is switched on for exactly the window;
    ``before_window`` is called once the N calls run, before the heap is frozen for it.
    ``history`` earlier turns (a user message and the agent's answer each) are in the
    agent's chat from the start.
    """
    gate, model = Gate(), BurstLLM(results)
    session: AgentSession[Any] = AgentSession(llm=model)
    chat_ctx = None
    if history:  # without one, the agent starts as every other benchmark's does
        chat_ctx = llm.ChatContext()
        for turn in range(history):
            chat_ctx.add_message(role="user", content=f"earlier question {turn}")
            chat_ctx.add_message(role="assistant", content=f"earlier answer {turn}")
    agent = Agent(instructions="bench", tools=build_tools(impl, gate), chat_ctx=chat_ctx)
    await session.start(agent)
    try:
        await session.run(user_input="go")
        model.released = True
        model.profiler = profiler
        if before_window is not None:
            before_window()
        start = start_timing()
        if profiler is not None:
            profiler.enable()
        gate.open()
        try:
            await asyncio.wait_for(model.covered.wait(), 600)
        finally:
            end_timing()
        assert model.covered_at is not None
        return model.covered_at - start, model.replies
    finally:
        await session.aclose()


class CollectionTime:
    """Passed as a burst's ``profiler`` (or enabled around any window): the time the garbage
    collector took in the window, by generation, and its longest collection
    (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = {0: 0.0, 1: 0.0, 2: 0.0}
        self.longest = 0.0
        """Seconds of the window's longest single collection."""
        self._started = 0.0

    @property
    def total(self) -> float:
        """Seconds of all the window's collections."""
        return sum(self.seconds.values())

    def enable(self) -> None:
        gc.callbacks.append(self._on_collection)

    def disable(self) -> None:
        gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self.seconds[info["generation"]] += took
        self.longest = max(self.longest, took)


class CollectionOff:
    """Passed as a burst's ``profiler``: automatic garbage collection is off for exactly the
    window (``gc.disable()`` in it, ``gc.enable()`` after), so the window holds no
    collection and none of the cache misses a collection leaves behind."""

    def enable(self) -> None:
        gc.disable()

    def disable(self) -> None:
        gc.enable()


def item_cost(results: int) -> float:
    """Seconds to build the two chat items of one result, alone (median of 5 batches of
    ``results``): the ``FunctionCall`` (with the call's ``extra``) and the output that
    core's ``make_tool_output`` builds from a string result."""
    extra = {"__livekit_agents_tool_non_blocking": True}
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(results):
            fnc_call = llm.FunctionCall(
                call_id=f"j{i}_finished", name="job", arguments=f'{{"n": {i}}}', extra=extra
            )
            make_tool_output(fnc_call=fnc_call, output=f"job {i} done", exception=None)
        times.append((time.perf_counter() - start) / results)
    return sorted(times)[2]
