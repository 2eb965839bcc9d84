"""Soak: many background calls through one session, in waves, with nothing piling up.

Each wave, the user asks once and the model starts ``WAVE`` background calls in one
response; each answers at once, then all finish together and one reply speaks them.
The chat must grow by exactly the wave's records and each wave must get exactly one
results reply. Then the chat is trimmed back to its first items, as a long-running agent
trims its context, and after a baseline the heap allocated through the plugin's code and
still held must stay flat: at most ``HEAP_SLACK`` plus ``BYTES_PER_CALL_BOUND`` bytes per
call (tracemalloc, by traceback: core's own per-reply growth, which it has with or without
the plugin, is not the plugin's).

CI runs a short version (1,800 calls). The long run (100,000 calls; 20,000 took 7 minutes
here)::

    ASYNCTOOLS_SOAK_CALLS=100000 .nox/tests-agents-1-8-9/bin/pytest tests/test_soak.py -s

It prints what the heap held, through the plugin's code and in all, at the end.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
from typing import Any

from livekit.agents import AgentSession, function_tool
from livekit.plugins.asynctools import AsyncRunContext, AsyncToolset
from livekit.plugins.asynctools.session_scope import existing_scope
from livekit.plugins.asynctools.testing import (
    ConversationLog,
    LLMRequest,
    Reply,
    ScriptedLLM,
    ToolCall,
)

from .travel import RESULTS_MARKER, TravelAgent

CALLS = int(os.environ.get("ASYNCTOOLS_SOAK_CALLS", "1800"))
WAVE = 150
WARM_UP_WAVES = 2
BASELINE_WAVE = 8
"""Tracing starts after the warm-up and the baseline is taken at this wave: in between,
one-off growth settles (asyncio's structures sized for a wave of tasks, core keeping its
last run's events)."""
HEAP_SLACK = 128 * 1024
BYTES_PER_CALL_BOUND = 2
"""After the baseline, the heap allocated through the plugin's code and still held may
grow by ``HEAP_SLACK`` (one-off resizes: asyncio's task table grew to 64 KB once in the
long run) plus this many bytes per call; one leaked call would hold over 2,000 bytes.
Measured (20,000 calls in waves of 250, 1.8.9): 85,892 bytes over the last 18,000 calls,
65,536 of them the task table."""
FRAMES = 8

_PLUGIN = "*/livekit/plugins/asynctools/*"
_HARNESS = "*/livekit/plugins/asynctools/testing/*"

# what one wave adds to the chat: per call its function call, its first update and the
# result's call/output pair; per wave the user's words, the acknowledgement and the reply
ITEMS_PER_CALL = 4
ITEMS_PER_WAVE = 3


def _trim(session: AgentSession[Any], keep: int) -> None:
    """Trim the agent's chat and the session history to their first ``keep`` items, and
    drop the events core records for its session report (1.x keeps every event it emits
    for the whole session, by design: that growth is core's, with or without the plugin)."""
    agent = session.current_agent
    chat = agent.chat_ctx.copy()
    chat.items[keep:] = []
    agent._chat_ctx = chat  # as update_chat_ctx would, without a round trip per wave
    del session.history.items[keep:]
    recorded = getattr(session, "_recorded_events", None)
    if isinstance(recorded, list):
        recorded.clear()


async def _settle() -> None:
    """Let what the last wave scheduled run (done callbacks, ending tasks), then collect."""
    for _ in range(5):
        await asyncio.sleep(0.02)
    gc.collect()


def _held_through_plugin(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot
) -> dict[str, int]:
    """Bytes allocated since ``before`` and still held, whose allocation went through the
    plugin's code (not its testing harness), by the plugin frame nearest the allocation."""
    held: dict[str, int] = {}
    for stat in after.compare_to(before, "traceback"):
        if stat.size_diff <= 0:
            continue
        frames = [f for f in stat.traceback if "/livekit/plugins/asynctools/" in f.filename]
        frames = [f for f in frames if "/asynctools/testing/" not in f.filename]
        if frames:
            where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}"
            held[where] = held.get(where, 0) + stat.size_diff
    return held


async def test_waves_of_calls_leave_no_heap_no_chat_and_no_replies_behind() -> None:
    """``CALLS`` calls through one session in waves of ``WAVE``: the chat grows by exactly
    the records, each wave gets one results reply, nothing is left registered, and after
    the baseline the heap held through the plugin's code (the chat trimmed) grows by at
    most ``HEAP_SLACK`` plus ``BYTES_PER_CALL_BOUND`` per call."""
    release = asyncio.Event()

    @function_tool
    async def job(ctx: AsyncRunContext, n: int) -> str:
        """Run job n."""
        await ctx.update(f"job {n} started")
        await release.wait()
        return f"job {n} done"

    wave_no = 0

    def respond(req: LLMRequest) -> Reply | None:
        last = req.last_item
        if last.type == "message" and last.role == "user":
            calls = [ToolCall("job", {"n": i}, call_id=f"w{wave_no}j{i}") for i in range(WAVE)]
            return Reply(tool_calls=calls)
        if req.mentions(RESULTS_MARKER):
            return Reply(text=f"wave {wave_no} done")
        return Reply(text=f"wave {wave_no} started")

    model = ScriptedLLM(responder=respond)
    toolset = AsyncToolset(id="soak", tools=[job], on_duplicate_call="allow", filler=None)
    session: AgentSession[Any] = AgentSession(llm=model)
    log = ConversationLog(session)
    await session.start(TravelAgent(tools=[toolset]))
    waves = max(-(-CALLS // WAVE), BASELINE_WAVE + 4)  # at least CALLS calls
    chat_growth: list[int] = []
    results_replies: list[int] = []
    keep = len(session.history.items)
    try:
        for wave_no in range(waves):  # noqa: B007 - the responder reads it
            if wave_no == WARM_UP_WAVES:
                await _settle()
                tracemalloc.start(FRAMES)
            if wave_no == BASELINE_WAVE:
                await _settle()
                before = tracemalloc.take_snapshot()
            release.clear()
            await session.run(user_input=f"wave {wave_no}")
            release.set()
            heard = f"wave {wave_no} done"
            await log.wait_for(lambda _, heard=heard: heard in log.heard, timeout=30)
            scope = existing_scope(session)
            assert scope is not None and scope.calls == [] and scope.delivery.pending == 0
            chat_growth.append(len(session.history.items) - keep)
            results_replies.append(sum(1 for h in log.heard if h.endswith(" done")))
            # what the test itself keeps per wave goes too: the model's requests, the log
            model.requests.clear()
            log.lines.clear()
            _trim(session, keep)
        await _settle()
        after = tracemalloc.take_snapshot()
        total = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        await session.aclose()

    held = _held_through_plugin(before, after)
    measured_calls = (waves - BASELINE_WAVE) * WAVE
    print(
        f"{waves * WAVE} calls in {waves} waves; over the last {measured_calls} calls the heap "
        f"held through the plugin's code grew by {sum(held.values())} B "
        f"({sum(held.values()) / measured_calls:.2f} B per call); all traced and held "
        f"(core's own growth included): {total} B"
    )
    assert sum(held.values()) <= HEAP_SLACK + BYTES_PER_CALL_BOUND * measured_calls, held
    assert chat_growth == [ITEMS_PER_CALL * WAVE + ITEMS_PER_WAVE] * waves
    assert results_replies == [1] * waves  # one results reply per wave
    assert existing_scope(session) is None
