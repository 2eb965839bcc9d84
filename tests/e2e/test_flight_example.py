"""The worked flight-booking example, end to end through the real OpenAI plugin clients.

The agent's pipeline session talks to a local OpenAI-protocol server (its ``base_url``);
nothing in the code under test is replaced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from agent import FlightAgent
from demo import (
    USER_LINES,
    YES_LINE,
    Transcript,
    _until,
    pipeline_session,
    run_pipeline,
    speak_into,
)
from flights import TravelBackend
from openai_server import LocalOpenAIServer
from scenario import flight_scenario

from . import EXAMPLE


def _agent_lines(transcript: Transcript) -> list[str]:
    return [line.split("agent  ", 1)[1] for line in transcript.lines if " agent  " in line]


async def test_the_pipeline_conversation_reaches_its_outcome_through_the_openai_clients(
    sockets: list[Any],
) -> None:
    """Spoken lines, heard by Silero VAD and transcribed by the OpenAI STT client: booking,
    a hotel at the same time, a refused duplicate, the task list and a cancellation. The
    user hears each step in order, and every request stayed local."""
    async with LocalOpenAIServer(flight_scenario(seconds_per_char=0.01)) as server:
        transcript = Transcript()
        problems = await run_pipeline(server, transcript)

    assert problems == []
    heard = [line.split("heard  ", 1)[1] for line in transcript.lines if " heard  " in line]
    # what the STT client was sent, transcribed: the script, and the payment answer once
    assert [h for h in heard if h != YES_LINE][: len(USER_LINES)] == USER_LINES
    assert heard.count(YES_LINE) == 1
    transcribed = [r for r in server.requests if r.path == "/v1/audio/transcriptions"]
    assert len(transcribed) >= len(USER_LINES) + 2
    agent_lines = _agent_lines(transcript)

    def said(start: str) -> int:
        return next(i for i, line in enumerate(agent_lines) if line.startswith(start))

    # each task's story in order; the two tasks interleave as the timing falls
    flight = [
        "Sure! Searching flights",
        "Found 3 flights.",
        "Shall I pay 192 euros for LK992?",
        "Great, paying now.",
        "Still booking your flight",
        "Your flight is booked",
        "I've emailed",
    ]
    hotel = ["Sure! Looking for a hotel", "Right now I'm working on:", "Done, I stopped the hotel"]
    for story in (flight, hotel):
        assert [said(s) for s in story] == sorted(said(s) for s in story), transcript.lines
    # the second booking was refused while the first one still ran
    assert said("That flight is already being booked") < said("Your flight is booked")
    assert "reserve_hotel" in agent_lines[said("Right now I'm working on:")]
    # the user may start a line just as a deferred reply starts: what they cut off is
    # said again in full afterwards
    for i, line in enumerate(agent_lines):
        if line.endswith(" (interrupted)"):
            assert line.removesuffix(" (interrupted)") in agent_lines[i + 1 :], transcript.lines
    assert all(r.path.startswith("/v1/") for r in server.requests)
    assert server.base_url.startswith("http://127.0.0.1:")
    assert sockets and {address[0] for address in sockets} == {"127.0.0.1"}


async def test_the_user_barging_in_on_a_deferred_reply_hears_it_again_afterwards(
    sockets: list[Any],
) -> None:
    """The user speaks over the reply that gives the flight search's progress: that reply
    is cut off, the user's question is answered, then the progress is given again in full."""
    question = "What's running?"
    # slow enough speech that core's echo-cancellation warm-up (the first 3 s the agent
    # speaks, when the user can not interrupt) is over before the user barges in
    async with LocalOpenAIServer(flight_scenario(seconds_per_char=0.04)) as server:
        transcript = Transcript()
        session, microphone = pipeline_session(server, transcript, lines=[USER_LINES[0], question])
        backend = TravelBackend(search_latency=0.5, booking_latency=60, hotel_latency=60)
        await session.start(
            FlightAgent(backend=backend, confirm_payment=False, booking_filler=False)
        )
        try:
            await speak_into(microphone, USER_LINES[0])
            await _until(lambda: len(_agent_lines(transcript)) == 1, timeout=15)

            def progress_being_spoken() -> bool:
                return any(
                    r.path == "/v1/audio/speech" and r.body["input"].startswith("Found 3")
                    for r in server.requests
                )

            await _until(progress_being_spoken, timeout=10)
            await speak_into(microphone, question)
            await _until(lambda: len(_agent_lines(transcript)) >= 4, timeout=15)
        finally:
            await session.aclose()

    lines = _agent_lines(transcript)
    assert lines[0].startswith("Sure! Searching flights")
    assert lines[1].startswith("Found 3 flights") and lines[1].endswith("(interrupted)")
    assert lines[2] == "Right now I'm working on: search_and_book_flight."
    assert lines[3].startswith("Found 3 flights") and not lines[3].endswith("(interrupted)")
    asked = [
        r
        for r in server.requests
        if r.path == "/v1/chat/completions"
        and "New results arrived" in str(r.body["messages"][-1].get("content"))
    ]
    assert len(asked) == 2
    assert all("_update_1" in str(r.body["messages"][-1]["content"]) for r in asked)
    assert sockets and {address[0] for address in sockets} == {"127.0.0.1"}


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
