"""Benchmarks: this plugin side by side with the installed release's own async tools.

Every scenario runs a real text-only ``AgentSession`` with a zero-latency scripted LLM,
in one process, the implementations interleaved round by round:

- ``asynctools``: this plugin's ``AsyncToolset``;
- ``core``: the release's own implementation (``livekit.agents.llm.async_toolset`` on
  1.5.x; ``RunContext.update`` on 1.6+), found by probing, not by version;
- ``plain``: an ordinary ``@function_tool`` (the floor, where it applies). In the heap
  figures it also keeps the frames the tool itself has while it waits, as a running
  call of the other two does, so the difference is what an implementation adds.

Usage::

    python benchmarks/run.py --quick                 # a fast run, checks nothing rots
    python benchmarks/run.py --out benchmarks/RESULTS.md

Figures are medians over the rounds; ratios compare implementations within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from livekit.agents import Agent, AgentSession, RunContext, function_tool
from livekit.plugins.asynctools import AsyncRunContext, AsyncToolset
from livekit.plugins.asynctools.testing import LLMRequest, Reply, ScriptedLLM, ToolCall

RESULTS_MARKER = "New results arrived"


# -- the implementations -------------------------------------------------------------


class Gate:
    """Lets the tools of a scenario go on together."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        # the plain tool's copies of a running call's own frames (see build_tools)
        self.parked: list[Coroutine[Any, Any, str]] = []

    def open(self) -> None:
        """Let every tool go on; the plain tool's parked frames are dropped."""
        self.event.set()
        for coro in self.parked:
            coro.close()
        self.parked.clear()


class _NoUpdates:
    """The context the plain tool's parked frames run with: nothing to update."""

    async def update(self, message: str) -> None:
        pass


_NO_UPDATES = _NoUpdates()  # one for all, so the plain floor holds no context per call


def _core_toolset_class() -> Any:
    """The release's own AsyncToolset with its own run context, or None (1.6+)."""
    try:
        from livekit.agents.llm import async_toolset
    except ImportError:
        return None
    if hasattr(RunContext, "update"):
        return None  # 1.6+: async tools are RunContext.update on any tool
    return async_toolset


def build_tools(impl: str, gate: Gate, *, updates: int = 0, progress: bool = False) -> list[Any]:
    """The benchmark tool ``job`` for ``impl``: first update, ``updates`` more, a result.

    With ``progress``, each later update also carries a fraction, a stage and a time left.
    """
    core = _core_toolset_class()

    async def body(ctx: Any, n: int) -> str:
        await ctx.update(f"job {n} started")
        await gate.event.wait()
        for i in range(updates):
            if progress:
                done = (i + 1) / updates
                await ctx.update(f"job {n} step {i}", progress=done, stage="step", seconds_left=i)
            else:
                await ctx.update(f"job {n} step {i}")
        return f"job {n} done"

    if impl == "asynctools":

        @function_tool
        async def job(ctx: AsyncRunContext, n: int) -> str:
            """Run job n."""
            return await body(ctx, n)

        return [AsyncToolset(id="bench", tools=[job], on_duplicate_call="allow")]
    if impl == "core" and core is not None:

        async def job_core(ctx: Any, n: int) -> str:
            return await body(ctx, n)

        # core finds its context parameter by annotation, resolved at runtime
        job_core.__annotations__ = {"ctx": core.AsyncRunContext, "n": int, "return": str}
        tool = function_tool(job_core, name="job", description="Run job n.")
        return [core.AsyncToolset(id="bench", tools=[tool], on_duplicate_call="allow")]
    if impl == "core":

        @function_tool
        async def job(ctx: RunContext, n: int) -> str:
            """Run job n."""
            return await body(ctx, n)

        return [job]

    async def running(ctx: Any, n: int) -> str:  # the frames of ``job`` above, running
        return await body(ctx, n)

    @function_tool
    async def job(n: int) -> str:  # plain
        """Run job n."""
        # A running call of any implementation keeps the tool's own frames, waiting on
        # the gate. The plain call runs the same frames up to the gate by hand (no task
        # is counted) and keeps them, so the heap figures compare what implementations add.
        coro = running(_NO_UPDATES, n)
        try:
            coro.send(None)
        except StopIteration:  # the gate is open already
            pass
        else:
            gate.parked.append(coro)
        return f"job {n} done"

    return [job]


# -- measuring -----------------------------------------------------------------------


class Probe:
    """A scripted LLM that calls ``job`` N times, and notes when results are asked for."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.reply_requests: list[tuple[float, LLMRequest]] = []
        self.llm = ScriptedLLM(responder=self._respond)

    def _respond(self, req: LLMRequest) -> Reply | None:
        last = req.last_item
        if last.type == "message" and last.role == "user":
            return Reply(
                tool_calls=[ToolCall("job", {"n": i}, call_id=f"j{i}") for i in range(self.calls)]
            )
        if any(RESULTS_MARKER in t for t in req.texts("system") + req.texts("developer")):
            self.reply_requests.append((time.perf_counter(), req))
        return Reply(text="ok")


async def _session(
    impl: str,
    gate: Gate,
    probe: Probe,
    *,
    history: int = 0,
    updates: int = 0,
    progress: bool = False,
) -> Any:
    agent = Agent(
        instructions="bench", tools=build_tools(impl, gate, updates=updates, progress=progress)
    )
    if history:
        ctx = agent.chat_ctx.copy()
        for i in range(history):
            ctx.add_message(role="user" if i % 2 else "assistant", content=f"message {i}")
        await agent.update_chat_ctx(ctx)
    session: AgentSession[Any] = AgentSession(llm=probe.llm)
    await session.start(agent)
    return session


def _start_timing() -> float:
    """The start of a timed window that no full collection can land in.

    Rounds of all implementations run in one process, interleaved: a full collection
    (over 100 ms once 1,000 calls have run) owed to what earlier rounds left behind would
    land in whichever window crosses the threshold, and make that figure bimodal. The
    heap so far is frozen until ``_end_timing()``: the window's own objects are collected
    as usual, and nothing is traversed (a collection here would leave the caches cold).
    """
    gc.freeze()
    return time.perf_counter()


def _end_timing() -> None:
    gc.unfreeze()


async def burst_delivery(impl: str, results: int) -> float:
    """Seconds from N results being released together to the reply that covers them all.

    Also notes in ``REPLIES`` how many result replies were asked for by then.
    """
    gate, probe = Gate(), Probe(results)
    session = await _session(impl, gate, probe)
    try:
        await session.run(user_input="go")
        start = _start_timing()
        gate.open()
        wanted = {f"j{i}" for i in range(results)}
        while True:
            for at, req in probe.reply_requests:
                ids = {o.split("_")[0] for o in req.output_ids() if "_" in o}
                if wanted <= ids:
                    REPLIES.append(len(probe.reply_requests))
                    return at - start
            await asyncio.sleep(0.001)
    finally:
        _end_timing()
        await session.aclose()


REPLIES: list[int] = []


async def call_overhead(impl: str) -> float:
    """Seconds for a user turn whose answer is one tool call (until its reply is done)."""
    gate, probe = Gate(), Probe(1)
    session = await _session(impl, gate, probe)
    try:
        await session.run(user_input="warm up")
        gate.open()
        await asyncio.sleep(0.01)
        start = _start_timing()
        await session.run(user_input="go")
        return time.perf_counter() - start
    finally:
        _end_timing()
        await session.aclose()


async def update_cost(impl: str, history: int, burst: int, *, progress: bool = False) -> float:
    """Seconds per update, `burst` updates in a row from one call, `history` chat items.

    With ``progress`` the updates carry structured progress (asynctools only)."""
    gate, probe = Gate(), Probe(1)
    session = await _session(impl, gate, probe, history=history, updates=burst, progress=progress)
    try:
        await session.run(user_input="go")
        agent = session.current_agent
        start = _start_timing()
        gate.open()
        # done when every update is in the agent's chat context
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
        _end_timing()
        await session.aclose()


async def heap_per_task(impl: str, tasks: int) -> float:
    """Bytes of Python heap held by one running call (before its result)."""
    gate, probe = Gate(), Probe(tasks)
    session = await _session(impl, gate, probe)
    try:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await session.run(user_input="go")
        probe.llm.requests.clear()  # the harness's copies of the requests are not the tool's
        gc.collect()
        during = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        gate.open()
        return (during - before) / tasks
    finally:
        await session.aclose()


async def rounds(fn: Callable[[], Awaitable[float]], n: int) -> float:
    values = [await fn() for _ in range(n)]
    return statistics.median(values)


# -- the report ----------------------------------------------------------------------


async def main(quick: bool, out: Path | None) -> int:
    impls = ["asynctools", "core"]
    n = 3 if quick else 7
    release = importlib.metadata.version("livekit-agents")
    core_kind = "AsyncToolset (llm.async_toolset)" if _core_toolset_class() else "RunContext.update"
    rows: list[tuple[str, dict[str, float], str]] = []

    res = {i: await rounds(lambda i=i: call_overhead(i), n) for i in [*impls, "plain"]}
    rows.append(("one call: user turn with one tool call, answered", res, "s"))

    delays = {i: [await burst_delivery(i, 1) for _ in range(n * 3)] for i in impls}
    rows.append(
        (
            "delivery delay when idle, median",
            {i: statistics.median(v) for i, v in delays.items()},
            "s",
        )
    )
    rows.append(
        (
            "delivery delay when idle, p95",
            {i: sorted(v)[int(0.95 * (len(v) - 1))] for i, v in delays.items()},
            "s",
        )
    )

    sizes = [10, 100] if quick else [10, 100, 1000]
    for size in sizes:
        REPLIES.clear()
        res = {i: await rounds(lambda i=i, s=size: burst_delivery(i, s), n) for i in impls}
        rows.append((f"{size} results released together: time to the one reply", res, "s"))
        replies_per_impl = dict(zip([i for i in impls for _ in range(n)], REPLIES, strict=False))
        rows.append((f"{size} results released together: replies asked", replies_per_impl, "n"))

    histories = [10, 1000] if quick else [10, 1000, 10000]
    for history in histories:
        for burst in (16, 1):
            res = {
                i: await rounds(lambda i=i, h=history, b=burst: update_cost(i, h, b), n)
                for i in impls
            }
            kind = "burst of 16" if burst == 16 else "isolated"
            rows.append((f"one update, {kind}, {history} chat items", res, "s"))
        # target: an update with structured progress costs at most 1.2x a plain one
        without = await rounds(lambda h=history: update_cost("asynctools", h, 16), n)
        with_progress = await rounds(
            lambda h=history: update_cost("asynctools", h, 16, progress=True), n
        )
        rows.append(
            (
                f"one update with structured progress, burst of 16, {history} chat items "
                f"({with_progress / without:.2f}x one without, same run)",
                {"asynctools": with_progress},
                "s",
            )
        )

    tasks = 50 if quick else 200
    heap = {i: await heap_per_task(i, tasks) for i in [*impls, "plain"]}
    rows.append((f"heap per running call ({tasks} calls)", heap, "B"))

    lines = [
        f"# Benchmarks on livekit-agents {release}",
        "",
        f"core implementation: {core_kind}; {'quick' if quick else 'full'} run, "
        f"median of {n} rounds; Python {sys.version.split()[0]}",
        "",
        "| scenario | asynctools | core | plain | core / asynctools |",
        "| --- | --- | --- | --- | --- |",
    ]

    def fmt(v: float | None, unit: str) -> str:
        if v is None:
            return "-"
        if unit == "s":
            return f"{v * 1e3:.3f} ms"
        return f"{v:.0f} B" if unit == "B" else f"{v:.0f}"

    for name, res, unit in rows:
        ratio = (
            res["core"] / res["asynctools"]
            if res.get("asynctools") and res.get("core")
            else float("nan")
        )
        lines.append(
            f"| {name} | {fmt(res.get('asynctools'), unit)} | {fmt(res.get('core'), unit)} | "
            f"{fmt(res.get('plain'), unit)} | {'-' if ratio != ratio else f'{ratio:.2f}x'} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if out is not None:
        out.write_text(report)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, small sizes")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.quick, args.out)))
