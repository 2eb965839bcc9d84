"""The worked flight-booking example, end to end through the real OpenAI plugin clients.

The agent's pipeline session talks to a local OpenAI-protocol server (its ``base_url``);
nothing in the code under test is replaced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flight_booking"
sys.path[:0] = [str(EXAMPLE / "offline"), str(EXAMPLE)]

from demo import Transcript, run_pipeline  # noqa: E402
from flights import TravelBackend  # noqa: E402
from openai_server import LocalOpenAIServer  # noqa: E402
from scenario import flight_scenario  # noqa: E402

from livekit.plugins.asynctools.testing.audio import FakeVAD  # noqa: E402


async def test_the_pipeline_conversation_reaches_its_outcome_through_the_openai_clients() -> None:
    """Booking, a hotel at the same time, a refused duplicate, the task list and a
    cancellation: the user hears each step in order, and every request stayed local."""
    async with LocalOpenAIServer(flight_scenario(seconds_per_char=0.004)) as server:
        transcript = Transcript()
        problems = await run_pipeline(server, transcript, vad=FakeVAD())

    assert problems == []
    agent_lines = [line.split("agent  ", 1)[1] for line in transcript.lines if " agent  " in line]
    order = [
        "Sure! Searching flights from Paris to Tokyo",
        "That flight is already being booked",
        "Right now I'm working on: reserve_hotel, search_and_book_flight.",
        "Your flight is booked, reference FL-",
        "I've emailed you the confirmation.",
        "The hotel search is cancelled.",
    ]
    positions = [next((i for i, a in enumerate(agent_lines) if a.startswith(o)), -1) for o in order]
    assert -1 not in positions and positions == sorted(positions), transcript.lines
    assert all(r.path.startswith("/v1/") for r in server.requests)
    assert server.base_url.startswith("http://127.0.0.1:")


async def test_the_backend_is_deterministic() -> None:
    backend = TravelBackend(search_latency=0, booking_latency=0, hotel_latency=0)
    first = await backend.search_flights("Paris", "Tokyo", "2026-12-03")
    again = await backend.search_flights("paris", "tokyo ", "2026-12-03")
    assert [(f.number, f.departs, f.price_eur) for f in first] == [
        (f.number, f.departs, f.price_eur) for f in again
    ]
    assert [f.price_eur for f in first] == sorted(f.price_eur for f in first)
    assert (await backend.book(first[0])).reference == (await backend.book(again[0])).reference


def _run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "agent.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", ["dev", "start"])
def test_running_against_livekit_without_credentials_says_what_to_set(command: str) -> None:
    result = _run_agent(command)
    assert result.returncode == 1
    assert "LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET" in result.stderr


def test_help_shows_the_livekit_agents_cli() -> None:
    result = _run_agent("--help")
    assert result.returncode == 0
    assert "dev" in result.stdout and "console" in result.stdout
