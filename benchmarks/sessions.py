"""Many sessions in one process: each with background calls that update on a timer, and
a user who speaks while their results land.

Each of ``sessions`` voice sessions (simulated microphone, VAD, STT, TTS and speaker, the
real audio pipeline of ``AgentSession``; a zero-latency model) is asked to ``go``; the
model calls ``job`` ``calls`` times; each call answers with a first update, then updates
every ``interval`` seconds ``updates`` times, then returns. A short while before the
results land the simulated user starts to speak, for ``speech`` seconds. The sessions'
starts are spread over one ``interval``.

The window runs from the first session asked to ``go`` to the last result reply heard in
full (every session's results reached the user). Over the window:

- event-loop lag: how late a task that sleeps ``LAG_TICK`` seconds in a loop wakes up,
  p50 and p99 over all its wake-ups;
- CPU time per update: the process CPU time of the window, less the CPU time of the same
  sessions idle for as long (measured just before, with everything started), divided by
  the ``ctx.update()`` calls made in the window (results and the replies they cause are
  in the CPU time, not in the count);
- marginal CPU time of a later update: the window's CPU time net of the idle sessions',
  less that of a run whose calls wait as long without their later updates, over those
  updates (the sessions' audio, the first updates, the results and the replies to them
  are common to both runs and cancel out); with silent later updates (1.8+ core has
  them), the update's own path;
- listeners per idle session, after the window (nothing pending, every call over): the
  session listeners that belong to this plugin, and what calling them costs per emit.

Heap per session is measured apart (:func:`heap_per_session`), under tracemalloc, which
would slow the timed run: the Python heap held per session while its calls run, from
before the sessions are created.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import time
import tracemalloc
from typing import Any

from bursts import CollectionTime
from harness import Gate, build_tools

from livekit.agents import Agent, llm
from livekit.agents.llm import ChatChunk, ChoiceDelta, FunctionToolCall
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from livekit.plugins.asynctools.testing.audio import voice_session

LAG_TICK = 0.005
"""Seconds the loop-lag probe sleeps between wake-ups."""

PLUGIN_MODULE = "livekit.plugins.asynctools"


class _SessionLLM(llm.LLM[Any]):
    """Answers ``go`` with ``calls`` calls of ``job``, anything else with a short line;
    counts the replies that gave background results."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls
        self.requests = 0

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[Any] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **kwargs: Any,
    ) -> llm.LLMStream:
        self.requests += 1
        last = chat_ctx.items[-1]
        go = last.type == "message" and last.role == "user" and last.text_content == "go"
        return _Stream(
            self,
            calls=self.calls if go else 0,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
        )


class _Stream(llm.LLMStream):
    def __init__(self, llm_: _SessionLLM, *, calls: int, **kwargs: Any) -> None:
        super().__init__(llm_, **kwargs)
        self._calls = calls

    async def _run(self) -> None:
        if not self._calls:
            delta = ChoiceDelta(role="assistant", content="Okay.")
            self._event_ch.send_nowait(ChatChunk(id="s", delta=delta))
            return
        calls = [
            FunctionToolCall(name="job", arguments=json.dumps({"n": i}), call_id=f"job_{i}")
            for i in range(self._calls)
        ]
        delta = ChoiceDelta(role="assistant", tool_calls=calls)
        self._event_ch.send_nowait(ChatChunk(id="s", delta=delta))


class _LagProbe:
    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            at = loop.time() + LAG_TICK
            await asyncio.sleep(LAG_TICK)
            self.lags.append(loop.time() - at)

    async def stop(self) -> list[float]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.lags


def _results_heard(vs: Any, calls: int) -> bool:
    """Whether every call's result is in the agent's chat and no speech is under way."""
    items = vs.session.current_agent._chat_ctx.items  # core 1.5 adds them here only
    results = sum(
        1
        for i in items
        if i.type == "function_call_output" and i.call_id.endswith(("_finished", "_final"))
    )
    return (
        results >= calls
        and vs.session.current_speech is None
        and vs.session.agent_state == "listening"
    )


def plugin_listeners(session: Any) -> dict[str, int]:
    """This plugin's listeners on ``session``, per event name (the test harness's own,
    which records the conversation, are not the plugin's)."""
    found: dict[str, int] = {}
    for event, callbacks in session._events.items():
        for cb in callbacks:
            if _is_plugin_listener(cb):
                found[event] = found.get(event, 0) + 1
    return found


def listener_cost(session: Any) -> float:
    """Seconds that this plugin's listeners on ``session`` add to one emit of each event
    of a conversation they listen to, summed over those events (``close``, emitted once
    per session, is left out): stand-ins with their signatures, on an emitter of their own.
    """
    from livekit.rtc import EventEmitter

    total = 0.0
    for event, callbacks in session._events.items():
        own = [cb for cb in callbacks if _is_plugin_listener(cb)]
        if not own or event == "close":
            continue
        probe: EventEmitter[str] = EventEmitter()
        for cb in own:
            probe.on(event, _harmless(cb))
        start = time.perf_counter()
        for _ in range(200):
            probe.emit(event, None)
        total += (time.perf_counter() - start) / 200
    return total


def _is_plugin_listener(cb: Any, *, unwrap: bool = True) -> bool:
    if unwrap:  # a `once` wrapper: what it calls
        for cell in getattr(cb, "__closure__", None) or ():
            inner = cell.cell_contents
            if callable(inner) and inner is not cb and _is_plugin_listener(inner, unwrap=False):
                return True
    owner = getattr(cb, "__self__", None)
    module = str(type(owner).__module__ if owner is not None else getattr(cb, "__module__", ""))
    return module.startswith(PLUGIN_MODULE) and ".testing" not in module


def _harmless(cb: Any) -> Any:
    """A stand-in with the listener's signature, so the emitter inspects the same thing."""
    import inspect

    sig = inspect.signature(cb)

    def stand_in(*args: Any) -> None:
        pass

    if getattr(cb, "__signature__", None) is not None or getattr(
        getattr(cb, "__func__", None), "__signature__", None
    ):
        stand_in.__signature__ = sig  # type: ignore[attr-defined]
    return stand_in


async def many_sessions(
    impl: str,
    *,
    sessions: int = 100,
    calls: int = 5,
    interval: float = 0.2,
    updates: int = 10,
    speech: float = 0.4,
    later: str = "spoken",
    profiler: Any = None,
) -> dict[str, float]:
    """Run the scenario (see the module) for ``impl``; its figures.

    ``later`` is how each call's later updates are made (``harness.build_tools``):
    ``"spoken"`` (the scenario), ``"silent"`` (recorded, no reply) or ``"none"`` (the call
    waits as long without them). Two runs that differ only there give the marginal CPU
    time of a later update (:func:`marginal_cpu_per_update`).
    """
    stack = contextlib.AsyncExitStack()
    voice: list[Any] = []
    models: list[_SessionLLM] = []
    gate = Gate()
    gate.open()  # the calls go on with their updates at once
    try:
        for _ in range(sessions):
            model = _SessionLLM(calls)
            models.append(model)
            tools = build_tools(impl, gate, updates=updates, interval=interval, later=later)
            agent = Agent(instructions="bench", tools=tools)
            voice.append(
                await stack.enter_async_context(
                    voice_session(agent, llm=model, seconds_per_char=0.01)
                )
            )
        await asyncio.sleep(0.5)  # the audio pipelines settle
        gc.collect()

        # the same sessions, idle, for as long as the window will take (about)
        duration = interval * (updates + 2) + speech + 1.0
        probe = _LagProbe()
        probe.start()
        cpu0 = time.process_time()
        await asyncio.sleep(duration)
        idle_cpu_per_s = (time.process_time() - cpu0) / duration
        idle_lags = await probe.stop()

        probe = _LagProbe()
        probe.start()
        collections = CollectionTime()
        collections.enable()
        if profiler is not None:
            profiler.enable()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        user_tasks = []
        for k, vs in enumerate(voice):
            offset = interval * k / sessions
            user_tasks.append(asyncio.create_task(_drive(vs, offset, interval, updates, speech)))
        await asyncio.gather(*user_tasks)
        deadline = time.perf_counter() + 120
        while not all(_results_heard(vs, calls) for vs in voice):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{impl}: the results did not all reach the user in 120 s")
            await asyncio.sleep(0.01)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        if profiler is not None:
            profiler.disable()
        collections.disable()
        lags = await probe.stop()
        await asyncio.sleep(0.3)  # every call and reply is over: the sessions are idle

        idle_listeners = [plugin_listeners(vs.session) for vs in voice]
        emit_cost = statistics.mean(listener_cost(vs.session) for vs in voice[:10])
        made = sessions * calls * (1 if later == "none" else updates + 1)
        cpu_net = cpu - idle_cpu_per_s * wall
        return {
            "lag_p50": _pct(lags, 0.5),
            "lag_p99": _pct(lags, 0.99),
            "lag_max": max(lags),
            "gc_full": collections.seconds[2],
            "gc_longest": collections.longest,
            "idle_lag_p99": _pct(idle_lags, 0.99),
            "cpu_per_update": cpu_net / made,
            "cpu_net": cpu_net,
            "later_updates": sessions * calls * (0 if later == "none" else updates),
            "cpu_share": cpu / wall,
            "idle_cpu_share": idle_cpu_per_s,
            "window": wall,
            "listeners_idle": statistics.mean(sum(n.values()) for n in idle_listeners),
            "listeners_idle_close": statistics.mean(n.get("close", 0) for n in idle_listeners),
            "replies_per_session": statistics.mean(m.requests for m in models) - 1,
            "listener_emit_cost": emit_cost,
        }
    finally:
        await stack.aclose()


def marginal_cpu_per_update(run: dict[str, float], without: dict[str, float]) -> float:
    """Seconds of CPU time one later update adds, replies it causes included: the net CPU
    of ``run`` less that of ``without`` (the same scenario, ``later="none"``), over the
    later updates ``run`` made."""
    return (run["cpu_net"] - without["cpu_net"]) / run["later_updates"]


async def _drive(vs: Any, offset: float, interval: float, updates: int, speech: float) -> None:
    await asyncio.sleep(offset)
    vs.session.generate_reply(user_input="go")
    # the user starts to speak shortly before the results land, and goes on past them
    await asyncio.sleep(interval * updates - speech / 2)
    await vs.user.say("wait a second", duration=speech)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


async def heap_per_session(
    impl: str, *, sessions: int = 20, calls: int = 5, interval: float = 0.2, updates: int = 10
) -> float:
    """Bytes of Python heap per session while its calls run (the first update answered,
    the later ones under way), from before the sessions were created."""
    stack = contextlib.AsyncExitStack()
    gate = Gate()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        voice = []
        for _ in range(sessions):
            tools = build_tools(impl, gate, updates=updates, interval=interval)
            agent = Agent(instructions="bench", tools=tools)
            vs = await stack.enter_async_context(
                voice_session(agent, llm=_SessionLLM(calls), seconds_per_char=0.01)
            )
            voice.append(vs)
            vs.session.generate_reply(user_input="go")
        await asyncio.sleep(0.5)  # every call has answered and waits on the gate
        gc.collect()
        during = tracemalloc.get_traced_memory()[0]
        return (during - before) / sessions
    finally:
        tracemalloc.stop()
        gate.open()
        await stack.aclose()
