"""Benchmark: from a background result to the first sound of its reply, in a real room.

This plugin side by side with the release's own async tools (core's
``livekit.agents.llm.async_toolset.AsyncToolset`` with ``RunContext.update``), on the same
setup: a livekit-server on loopback (the room tests' pinned build), one ``start`` worker
per implementation running the flight example's pipeline session (Silero VAD; OpenAI STT,
LLM and TTS clients) against the local OpenAI-protocol server of the offline demo, and
one user in each room through the real rtc clients.

Each run, the user types ``run job <n>`` (the ``lk.chat`` text stream); the model calls
``job(n)``; the tool reports that it started (the agent says so), waits
:data:`JOB_SECONDS`, and returns. Measured per run:

- start: the instant the tool returns, ``time.time()`` in the job process right before
  its ``return`` (printed to the worker's log);
- end: the instant the first audible frame of the agent's next speech reaches the user,
  ``time.time()`` when the user's ``rtc.AudioStream`` yields it (the local TTS speaks a
  tone, silence is below the threshold);
- latency = end - start: the implementation noticing the result and asking for a reply,
  the model's answer, text to speech, WebRTC to the user. Both instants are read from
  the same machine's clock.

The two implementations run in turns, round by round, so both see the same machine load.

Usage::

    python benchmarks/room_latency.py            # 25 runs of each
    python benchmarks/room_latency.py --runs 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit.agents import RunContext, function_tool
from livekit.plugins.asynctools import AsyncRunContext, AsyncToolset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flight_booking"
sys.path[:0] = [str(EXAMPLE / "offline"), str(EXAMPLE), str(ROOT)]

IMPLEMENTATIONS = ("asynctools", "core")
JOB_SECONDS = 1.5
"""How long the job runs after its first update: the agent has long finished saying it
started, so the result finds the conversation idle."""
RESULT_LINE = "room_latency result"
REPLY = "Your job is done."
SAY_RESULT = "say the result"
_WORKER = "ROOM_LATENCY_IMPL"  # set in the worker's environment: which tools it runs


# -- the worker: the example's pipeline session with one background tool ---------------


def _stamp(n: int) -> None:
    # straight to the worker's stdout, which the benchmark reads: no logging on the way
    print(f"{RESULT_LINE} {n} {time.time():.6f}", flush=True)


def _tools(impl: str) -> list[Any]:
    if impl == "asynctools":

        @function_tool
        async def job(ctx: AsyncRunContext, n: int) -> str:
            """Run job n in the background."""
            await ctx.update(f"Job {n} started.")
            await asyncio.sleep(JOB_SECONDS)
            _stamp(n)
            return f"Job {n} done."

        return [AsyncToolset(id="bench", tools=[job])]

    from livekit.agents.llm.async_toolset import AsyncToolset as CoreAsyncToolset

    @function_tool  # type: ignore[no-redef]
    async def job(ctx: RunContext, n: int) -> str:
        """Run job n in the background."""
        await ctx.update(f"Job {n} started.")
        await asyncio.sleep(JOB_SECONDS)
        _stamp(n)
        return f"Job {n} done."

    return [CoreAsyncToolset(id="bench", tools=[job])]


def prewarm(proc: Any) -> None:
    """The worker's process setup: load the VAD once."""
    from livekit.plugins import silero

    proc.userdata["vad"] = silero.VAD.load()


async def entrypoint(ctx: Any) -> None:
    """The job: the example's pipeline session, with the one background tool."""
    from agent import build_session

    from livekit.agents import Agent

    session = build_session(mode="pipeline", vad=ctx.proc.userdata["vad"])
    agent = Agent(instructions="Run the jobs the user asks for.", tools=_tools(os.environ[_WORKER]))
    await session.start(agent, room=ctx.room)


def _worker_main() -> None:
    from livekit.agents import AgentServer, cli

    # no load reported: the server sends no job to a worker whose load (by default the
    # machine's CPU, shared here with the other worker, the server and the user) passes 0.7
    server = AgentServer(
        host="127.0.0.1", port=0, load_fnc=lambda: 0.0, load_threshold=float("inf")
    )
    server.setup_fnc = prewarm
    server.rtc_session(entrypoint, agent_name=f"bench-{os.environ[_WORKER]}")
    cli.run_app(server)


# -- the model's part ----------------------------------------------------------------


def _scenario() -> Any:
    from openai_server import Answer, Rule, Scenario
    from scenario import RESULTS_MARKER

    def text(message: dict[str, Any]) -> str:
        content = message.get("content")
        return content if isinstance(content, str) else ""

    def asked(messages: list[dict[str, Any]]) -> Answer:
        n = int(re.findall(r"\d+", text(messages[-1]))[-1])
        return Answer(tool_calls=(("job", {"n": n}),))

    return Scenario(
        seconds_per_char=0.02,
        rules=[
            Rule(
                SAY_RESULT,
                lambda m: (
                    m[-1].get("role") in ("system", "developer") and RESULTS_MARKER in text(m[-1])
                ),
                Answer(text=REPLY),
            ),
            Rule("say it started", lambda m: m[-1].get("role") == "tool", Answer(text="Started.")),
            Rule("run the job", lambda m: "run job" in text(m[-1]).lower(), asked),
        ],
    )


# -- measuring -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One run's instants (``time.time()``), as defined in the module's docstring.

    Attributes:
        start: The tool returned.
        asked: The model's server received the request for the result's reply.
        end: The reply's first audible frame reached the user.
    """

    start: float
    asked: float
    end: float


async def _one_run(user: Any, worker: Any, model: Any, n: int) -> Run:
    """One run of ``job(n)``.

    Raises:
        RuntimeError: The agent was still speaking when the result came, or its next
            speech was not the result's reply: the run measured something else.
    """
    from tests.room.user import AUDIBLE_RMS, until, until_quiet_for

    mark, said = len(worker.log), len(user.agent_lines())
    await user.send_chat(f"run job {n}")
    line = await worker.wait_for_log(f"{RESULT_LINE} {n} ", timeout=30, start=mark)
    start = float(line.rsplit(" ", 1)[1])
    await until(lambda: user.audio_started_after(start) is not None, timeout=15, what="the reply")
    end = user.audio_started_after(start)
    assert end is not None
    await until_quiet_for(user.agent_quiet, 0.5)
    if any(start - 0.5 <= f.at < start and f.rms > AUDIBLE_RMS for f in user.frames):
        raise RuntimeError(f"run {n}: the agent was speaking when the result came")
    if user.agent_lines()[said:] != ["Started.", REPLY]:
        raise RuntimeError(f"run {n}: the agent said {user.agent_lines()[said:]}")
    # one room at a time: the first request for a reply to a result is this run's
    asked = next(r.at for r in model.requests if r.rule == SAY_RESULT and r.at >= start)
    return Run(start=start, asked=asked, end=end)


async def _measure(runs: int, server_log: Path | None) -> dict[str, list[Run]]:
    from openai_server import LocalOpenAIServer

    from tests.room.livekit_server import ensure_binary, start_server
    from tests.room.user import RoomUser, until_quiet_for
    from tests.room.worker import WorkerProcess

    livekit = start_server(binary=ensure_binary(), log_path=server_log)
    results: dict[str, list[Run]] = {impl: [] for impl in IMPLEMENTATIONS}
    try:
        async with LocalOpenAIServer(_scenario()) as model:
            workers = {
                impl: WorkerProcess(
                    livekit_url=livekit.url,
                    api_key=livekit.api_key,
                    api_secret=livekit.api_secret,
                    openai_base_url=model.base_url,
                    mode="pipeline",
                    script=Path(__file__),
                    env={_WORKER: impl},
                )
                for impl in IMPLEMENTATIONS
            }
            users = {
                impl: RoomUser(
                    url=livekit.url,
                    api_key=livekit.api_key,
                    api_secret=livekit.api_secret,
                    room=f"latency-{impl}",
                    agent_name=f"bench-{impl}",
                )
                for impl in IMPLEMENTATIONS
            }
            try:
                await asyncio.gather(*(w.__aenter__() for w in workers.values()))
                for impl, user in users.items():
                    await user.join()
                    try:
                        await user.wait_for_agent()
                    except TimeoutError:
                        raise workers[impl].failure(f"no {impl} agent joined the room") from None
                    await until_quiet_for(user.agent_quiet, 1.0)
                for n in range(runs):
                    # alternate which goes first, so neither always runs after the other
                    order = IMPLEMENTATIONS if n % 2 == 0 else IMPLEMENTATIONS[::-1]
                    for impl in order:
                        run = await _one_run(users[impl], workers[impl], model, n)
                        results[impl].append(run)
                        print(
                            f"  {impl:<10} run {n:2d}: start {run.start:.3f}  end {run.end:.3f}"
                            f"  latency {1000 * (run.end - run.start):6.1f} ms"
                            f"  (model asked after {1000 * (run.asked - run.start):5.1f} ms)",
                            flush=True,
                        )
                unanswered = [r.path for r in model.requests if r.rule is None and "chat" in r.path]
                if unanswered:
                    raise RuntimeError(f"{len(unanswered)} model requests matched no rule")
            finally:
                for user in users.values():
                    await user.leave()
                for worker in workers.values():
                    await worker.stop()
    finally:
        livekit.stop()
    return results


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def main() -> None:
    if os.environ.get(_WORKER):
        _worker_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=25, help="runs of each implementation")
    parser.add_argument("--server-log", type=Path, help="keep livekit-server's log there")
    args = parser.parse_args()

    import importlib.metadata

    release = importlib.metadata.version("livekit-agents")
    print(f"livekit-agents {release}: {args.runs} runs of each, job of {JOB_SECONDS:g} s")
    print("start: time.time() in the job process right before the tool returns")
    print(
        "end:   time.time() when the user's rtc.AudioStream yields the first frame of the "
        "agent's audio louder than the silence threshold, after start\n"
    )
    results = asyncio.run(_measure(args.runs, args.server_log))
    print("\nfrom the tool's return to the first audible frame reaching the room participant:")
    header = ["implementation", "runs", "median", "p95", "min", "max", "to request", "after it"]
    print(f"{header[0]:<16}" + "".join(f"{h:>12}" for h in header[1:]))
    for impl, runs in results.items():
        total = [1000 * (r.end - r.start) for r in runs]
        to_request = [1000 * (r.asked - r.start) for r in runs]
        after = [1000 * (r.end - r.asked) for r in runs]
        figures = [
            statistics.median(total),
            _p95(total),
            min(total),
            max(total),
            statistics.median(to_request),
            statistics.median(after),
        ]
        print(f"{impl:<16}{len(runs):>12}" + "".join(f"{f:>10.1f}ms" for f in figures))
    print(
        "\n(to request: median from the tool's return to the reply's request reaching the"
        " model's server, the implementation's part; after it: median from there to the first"
        " audible frame, model, text to speech and WebRTC, the same for both)"
    )


if __name__ == "__main__":
    main()
