"""Offline demo: the flight agent through the real livekit-plugins-openai clients.

Starts the local OpenAI-protocol server with the flight scenario, runs the agent's
STT-LLM-TTS pipeline session (OpenAI LLM and TTS clients pointed at the server through
``base_url``, Silero VAD), types the user's lines, plays the agent's speech on a
simulated speaker in real time, and prints a timestamped transcript of what the user
hears and of each background task's start, updates and end. Exits 1 if the
conversation did not reach its outcome (flight booked and confirmed by email, hotel
search cancelled on request).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from agent import FlightAgent, build_session  # noqa: E402
from flights import TravelBackend  # noqa: E402
from openai_server import LocalOpenAIServer  # noqa: E402
from scenario import flight_scenario  # noqa: E402

from livekit.plugins.asynctools.testing.audio import RealTimeSpeaker  # noqa: E402

USER_LINES = [
    "Book me a flight from Paris to Tokyo on December 3rd.",
    "Please also reserve a hotel in Tokyo for 4 nights.",
    "Book that flight again.",
    "No, one is enough.",
    "What's running right now?",
]


class Transcript:
    """Timestamped lines, printed as they happen."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.lines: list[str] = []

    def add(self, who: str, text: str) -> None:
        line = f"[{time.monotonic() - self._t0:5.2f}s] {who:<6} {text}"
        self.lines.append(line)
        print(line, flush=True)


def _watch(session: Any, transcript: Transcript) -> None:
    def on_item(ev: Any) -> None:
        item = ev.item
        if getattr(item, "role", None) == "assistant" and item.text_content:
            cut = " (interrupted)" if getattr(item, "interrupted", False) else ""
            transcript.add("agent", item.text_content + cut)

    def on_tool(ev: Any) -> None:
        update = ev.update
        if update.type == "tool_call_started":
            transcript.add(
                "task", f"{update.function_call.name} started ({update.function_call.call_id})"
            )
        elif update.type == "tool_call_updated":
            transcript.add("task", f"{update.id}: {update.message.splitlines()[0]}")
        elif update.type == "tool_call_ended" and update.id.endswith("_final"):
            transcript.add("task", f"{update.call_id} ended: {update.status}")

    session.on("conversation_item_added", on_item)
    session.on("tool_execution_updated", on_tool)


async def run_pipeline(
    server: LocalOpenAIServer, transcript: Transcript, *, vad: Any = None, speed: float = 1.0
) -> list[str]:
    """Play the conversation on the pipeline session; returns what went wrong.

    Args:
        server: The running local server (its scenario sets how long speech lasts).
        transcript: Where the lines go.
        vad: The pipeline's VAD (default: Silero, as in a real run).
        speed: Backend speed-up; the user speaks right after each answer anyway.
    """
    backend = TravelBackend(
        search_latency=3.0, booking_latency=2.5, hotel_latency=30.0, speed=speed
    )
    session = build_session(mode="pipeline", base_url=server.base_url, api_key="offline", vad=vad)
    session.output.audio = RealTimeSpeaker()
    _watch(session, transcript)
    await session.start(FlightAgent(backend=backend))
    try:
        for line in USER_LINES:
            transcript.add("user", line)
            await session.run(user_input=line)
        await _until(lambda: bool(backend.emails), timeout=10)
        await _until(lambda: _heard(session, "emailed"), timeout=10)
        line = "Actually, cancel the hotel."
        transcript.add("user", line)
        await session.run(user_input=line)
        await _until(lambda: _heard(session, "hotel search is cancelled"), timeout=10)
    finally:
        await session.aclose()

    problems = []
    if len(backend.emails) != 1:
        problems.append(f"expected one confirmation email, got {backend.emails}")
    if not any(
        i.type == "function_call_output" and i.call_id.endswith("_cancelled")
        for i in session.history.items
    ):
        problems.append("the hotel search was not recorded as cancelled")
    if unanswered := [
        r for r in server.requests if r.path.endswith("completions") and r.rule is None
    ]:
        problems.append(f"{len(unanswered)} chat requests matched no rule")
    return problems


def _heard(session: Any, text: str) -> bool:
    return any(
        getattr(i, "role", None) == "assistant" and text in (i.text_content or "")
        for i in session.history.items
    )


async def _until(predicate: Any, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the conversation did not get there in time")
        await asyncio.sleep(0.05)


async def main() -> int:
    """Run the demo; 0 when the conversation reached its outcome."""
    async with LocalOpenAIServer(flight_scenario()) as server:
        print(f"local OpenAI-protocol server at {server.base_url}\n")
        print("== pipeline mode (OpenAI LLM + TTS clients, Silero VAD) ==")
        transcript = Transcript()
        try:
            problems = await run_pipeline(server, transcript)
        except TimeoutError as e:
            problems = [str(e)]
        hosts = {r.path for r in server.requests}
        print(f"\n{len(server.requests)} requests, all to {server.base_url}: {sorted(hosts)}")
    print("\nrealtime mode: not part of this demo yet (the local realtime websocket is pending)")
    if problems:
        print("\nFAILED:\n- " + "\n- ".join(problems))
        return 1
    print("\nOK: flight booked and confirmed by email, hotel search cancelled on request.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
