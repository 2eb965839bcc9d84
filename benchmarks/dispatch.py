"""Dispatch of one call: from the model emitting the call to the model receiving the
call's first answer, with the tool still running.

Start: :class:`DispatchLLM`'s stream is about to send the chunk that holds the call
(``time.perf_counter()`` just before ``send_nowait``). End: the session asks the model
for its next reply with that call's output as the newest chat item (first thing in
``chat()``). In between runs everything the session, core and the implementation do:
parsing and dispatching the call, binding its arguments, running the tool up to its
first ``ctx.update()`` (a plain tool: to its return), recording the output in the chat
and starting the reply. The tool is still running at the end (background tools wait on
a gate that opens only after it).

Each sample is one user turn of a session that has already run a call (steady state),
from an empty chat (the agent's chat context is emptied before each turn: core's work per
turn grows with the chat); a session's first call (which also sets up what an
implementation keeps per session) is reported apart. The implementations' sessions run
side by side in one process, one turn each in turn; their order rotates from round to
round.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import time
from typing import Any

from harness import CANCELLABLE, Gate, build_tools

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.llm import ChatChunk, ChoiceDelta, FunctionToolCall
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions


def dispatch_impls() -> list[str]:
    """The implementations this release has: core with and without its CANCELLABLE flag."""
    return ["asynctools", "core", *(["core_cancellable"] if CANCELLABLE else []), "plain"]


class DispatchLLM(llm.LLM[Any]):
    """A model that answers a user message with one call of ``job`` and notes two moments.

    ``emitted``: just before its stream sends the chunk that holds the call.
    ``received``: on entry to ``chat()`` with that call's output as the newest item.
    Nothing else is done per request (no copy of the context), so the window holds only
    what the session itself does. ``profiler`` (anything with ``enable()`` and
    ``disable()``, e.g. a ``cProfile.Profile``) is switched on for exactly the window.
    """

    def __init__(self) -> None:
        super().__init__()
        self.call_id = ""
        self.emitted = self.emitted_cpu = 0.0
        self.received = self.received_cpu = 0.0
        self.got_output = asyncio.Event()
        self.result_seen = asyncio.Event()
        self.profiler: Any = None

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[Any] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **kwargs: Any,
    ) -> llm.LLMStream:
        last = chat_ctx.items[-1]
        if last.type == "function_call_output" and last.call_id == self.call_id:
            if not self.got_output.is_set():
                self.received = time.perf_counter()
                self.received_cpu = time.thread_time()
                if self.profiler is not None:
                    self.profiler.disable()
                self.got_output.set()
        elif not (last.type == "message" and last.role == "user"):
            self.result_seen.set()  # a later reply: the call's result, or a plain answer
        call = last.type == "message" and last.role == "user"
        return _Stream(
            self, call=call, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


class _Stream(llm.LLMStream):
    def __init__(self, llm_: DispatchLLM, *, call: bool, **kwargs: Any) -> None:
        super().__init__(llm_, **kwargs)
        self._owner = llm_
        self._call = call

    async def _run(self) -> None:
        if not self._call:
            delta = ChoiceDelta(role="assistant", content="ok")
            self._event_ch.send_nowait(ChatChunk(id="dispatch", delta=delta))
            return
        owner = self._owner
        fnc = FunctionToolCall(name="job", arguments=json.dumps({"n": 1}), call_id=owner.call_id)
        chunk = ChatChunk(id="dispatch", delta=ChoiceDelta(role="assistant", tool_calls=[fnc]))
        if owner.profiler is not None:
            owner.profiler.enable()
        owner.emitted_cpu = time.thread_time()
        owner.emitted = time.perf_counter()
        self._event_ch.send_nowait(chunk)


class DispatchSession:
    """A text session of one implementation whose turns are timed (see the module)."""

    def __init__(self, impl: str) -> None:
        self.impl = impl
        self.gate = Gate()
        self.llm = DispatchLLM()
        self.turns = 0
        self.session: AgentSession[Any] = AgentSession(llm=self.llm)

    async def start(self) -> None:
        tools = build_tools(self.impl, self.gate, park_plain=False)
        await self.session.start(Agent(instructions="bench", tools=tools))

    async def turn(self) -> tuple[float, float]:
        """One user turn: seconds from the call emitted to its first answer received, in
        wall-clock time and in this thread's CPU time."""
        self.turns += 1
        lm = self.llm
        lm.call_id = f"call_{self.turns}"
        lm.got_output.clear()
        lm.result_seen.clear()
        self.gate.reset()
        # every turn starts from the same chat (core's work per turn grows with it, and the
        # implementations leave different numbers of items behind)
        await self.session.current_agent.update_chat_ctx(llm.ChatContext())
        gc.collect()
        gc.freeze()  # no collection of earlier garbage inside the window
        try:
            self.session.generate_reply(user_input="go")
            await lm.got_output.wait()
        finally:
            gc.unfreeze()
        timed = (lm.received - lm.emitted, lm.received_cpu - lm.emitted_cpu)
        # the reply to the first answer plays out; then the call ends, and its result is
        # given before the next turn (core 1.5 drops a result that lands while the agent
        # replies, and may give none at all: that wait is bounded)
        await _settle(self.session)
        lm.result_seen.clear()
        self.gate.open()
        if self.impl != "plain":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lm.result_seen.wait(), 2.0)
        await _settle(self.session)
        return timed

    async def aclose(self) -> None:
        await self.session.aclose()


async def _settle(session: AgentSession[Any]) -> None:
    for _ in range(2500):
        await asyncio.sleep(0.002)
        if session.current_speech is None and session.agent_state == "listening":
            return
    raise RuntimeError("the session did not settle")


Samples = dict[str, list[float]]


async def measure(
    impls: list[str], *, rounds: int, turns: int
) -> tuple[Samples, Samples, Samples, Samples]:
    """Per implementation: first-call wall and CPU times, steady wall and CPU times."""
    first: Samples = {i: [] for i in impls}
    first_cpu: Samples = {i: [] for i in impls}
    steady: Samples = {i: [] for i in impls}
    steady_cpu: Samples = {i: [] for i in impls}
    for r in range(rounds):
        order = impls[r % len(impls) :] + impls[: r % len(impls)]
        sessions = {i: DispatchSession(i) for i in order}
        for s in sessions.values():
            await s.start()
        try:
            for i in order:
                wall, cpu = await sessions[i].turn()
                first[i].append(wall)
                first_cpu[i].append(cpu)
            for _ in range(turns):
                for i in order:
                    wall, cpu = await sessions[i].turn()
                    steady[i].append(wall)
                    steady_cpu[i].append(cpu)
        finally:
            for s in sessions.values():
                await s.aclose()
    return first, first_cpu, steady, steady_cpu


def medians(samples: Samples) -> dict[str, float]:
    return {i: statistics.median(v) for i, v in samples.items()}
