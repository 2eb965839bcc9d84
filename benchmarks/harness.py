"""What the benchmarks share: the implementations side by side, and how a window is timed.

The implementations, by name:

- ``asynctools``: this plugin's ``AsyncToolset`` (another build of the plugin can be added
  to :data:`PLUGINS` under a name of its own, to compare two builds in one run);
- ``core``: the release's own async tools (``livekit.agents.llm.async_toolset`` on 1.5.x;
  ``RunContext.update`` on 1.6+), found by probing, not by version;
- ``core_cancellable`` (1.6+): the same, with core's ``ToolFlag.CANCELLABLE``, so core
  offers its two task tools too, as the plugin does;
- ``plain``: an ordinary ``@function_tool`` (the floor, where it applies).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import time
from collections.abc import Coroutine
from typing import Any

import livekit.plugins.asynctools as asynctools
from livekit.agents import RunContext, function_tool

try:
    from livekit.agents.llm.tool_context import ToolFlag
except ImportError:  # pragma: no cover
    ToolFlag = None  # type: ignore[assignment,misc]

CANCELLABLE: Any = getattr(ToolFlag, "CANCELLABLE", None)

PLUGINS: dict[str, Any] = {"asynctools": asynctools}
"""Builds of this plugin to measure, by name."""

RESULTS_MARKER = "New results arrived"
"""In the instructions of the reply that gives background results, on every implementation."""


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

    def reset(self) -> None:
        """Close the gate again, for the next round of calls."""
        self.event = asyncio.Event()


class _NoUpdates:
    """The context the plain tool's parked frames run with: nothing to update."""

    async def update(self, message: str) -> None:
        pass


_NO_UPDATES = _NoUpdates()  # one for all, so the plain floor holds no context per call


def core_toolset_module() -> Any:
    """The release's own ``llm.async_toolset`` module (1.5.x), or None (1.6+)."""
    try:
        from livekit.agents.llm import async_toolset
    except ImportError:
        return None
    if hasattr(RunContext, "update"):
        return None  # 1.6+: async tools are RunContext.update on any tool
    return async_toolset


def has_silent_updates() -> bool:
    """Whether the release's own async tools take ``update(..., silent=True)`` (1.8+)."""
    update = getattr(RunContext, "update", None)
    return update is not None and "silent" in inspect.signature(update).parameters


def core_kind() -> str:
    """What ``core`` is on this release."""
    return "AsyncToolset (llm.async_toolset)" if core_toolset_module() else "RunContext.update"


def with_context(fn: Any, ctx_type: Any) -> Any:
    """``fn(ctx, n)`` as the tool ``job``, its context found by ``ctx_type`` at runtime."""
    fn.__annotations__ = {"ctx": ctx_type, "n": int, "return": str}
    return function_tool(fn, name="job", description="Run job n.")


def build_tools(
    impl: str,
    gate: Gate,
    *,
    updates: int = 0,
    progress: bool = False,
    interval: float = 0.0,
    later: str = "spoken",
    park_plain: bool = True,
) -> list[Any]:
    """The benchmark tool ``job`` for ``impl``: first update, ``updates`` more, a result.

    With ``progress``, each later update also carries a fraction, a stage and a time left;
    ``later="silent"`` makes the later updates ``silent=True`` (recorded, never spoken: see
    :func:`has_silent_updates`), ``later="none"`` leaves them out (the tool waits as long);
    ``interval`` seconds pass before each later update. The plain tool answers at once;
    with ``park_plain`` it keeps the frames a running call of the others keeps (heap).
    """

    async def body(ctx: Any, n: int) -> str:
        await ctx.update(f"job {n} started")
        await gate.event.wait()
        for i in range(updates):
            if interval:
                await asyncio.sleep(interval)
            if later == "none":
                continue
            if progress:
                done = (i + 1) / updates
                await ctx.update(f"job {n} step {i}", progress=done, stage="step", seconds_left=i)
            elif later == "silent":
                await ctx.update(f"job {n} step {i}", silent=True)
            else:
                await ctx.update(f"job {n} step {i}")
        return f"job {n} done"

    async def job(ctx: Any, n: int) -> str:
        return await body(ctx, n)

    if impl in PLUGINS:
        plugin = PLUGINS[impl]
        tool = with_context(job, plugin.AsyncRunContext)
        return [plugin.AsyncToolset(id="bench", tools=[tool], on_duplicate_call="allow")]
    core = core_toolset_module()
    if impl == "core" and core is not None:
        tool = with_context(job, core.AsyncRunContext)
        return [core.AsyncToolset(id="bench", tools=[tool], on_duplicate_call="allow")]
    if impl in ("core", "core_cancellable"):
        flags = CANCELLABLE if impl == "core_cancellable" else ToolFlag.NONE
        return [function_tool(with_context(job, RunContext), flags=flags)]

    async def plain_job(n: int) -> str:
        # A running call of any implementation keeps the tool's own frames, waiting on
        # the gate. The plain call runs the same frames up to the gate by hand (no task
        # is counted) and keeps them, so the heap figures compare what implementations add.
        if park_plain:
            coro = job(_NO_UPDATES, n)
            try:
                coro.send(None)
            except StopIteration:  # the gate is open already
                pass
            else:
                gate.parked.append(coro)
        return f"job {n} done"

    plain_job.__annotations__ = {"n": int, "return": str}
    return [function_tool(plain_job, name="job", description="Run job n.")]


def start_timing() -> float:
    """The start of a timed window that no full collection can land in.

    Rounds of all implementations run in one process, interleaved: a full collection
    (over 100 ms once 1,000 calls have run) owed to what earlier rounds left behind would
    land in whichever window crosses the threshold, and make that figure bimodal. The
    heap so far is frozen until :func:`end_timing`: the window's own objects are collected
    as usual, and nothing is traversed (a collection here would leave the caches cold).
    """
    gc.freeze()
    return time.perf_counter()


def end_timing() -> None:
    gc.unfreeze()
