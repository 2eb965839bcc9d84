"""The flight agent as its users run it: a worker, a real LiveKit room, a user who speaks.

``examples/flight_booking/agent.py`` runs in a subprocess (``start``, and ``dev`` once)
against the ``livekit_server`` fixture, its model played by the local OpenAI-protocol
server of the offline demo. The user joins the room through the real rtc clients and
talks: synthesized speech on a microphone track. In pipeline mode Silero VAD in the job
hears it and the OpenAI STT client uploads it; in realtime mode the OpenAI realtime
client streams the room's audio to the local realtime server, whose server-side VAD
finds the user's turns. Everything the test checks, it observes from outside the worker:
what the user hears and reads in the room, the task feed the plugin publishes, and what
the model was sent.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from livekit import api

from .user import RoomUser, converse, until
from .worker import JOB_REQUESTED, WorkerProcess

OFFLINE = Path(__file__).resolve().parents[2] / "examples" / "flight_booking" / "offline"
if str(OFFLINE) not in sys.path:
    sys.path.insert(0, str(OFFLINE))

from demo import CANCEL_LINE, USER_LINES, YES_LINE  # noqa: E402
from openai_server import LocalOpenAIServer, Message  # noqa: E402
from scenario import flight_scenario  # noqa: E402
from user_voice import speak  # noqa: E402

pytestmark = pytest.mark.timeout(150)

BOOKING_REFERENCE = "FL-129894"
"""The reference the example's backend gives the flight of the conversation."""

BACKEND = {
    "FLIGHT_SEARCH_LATENCY": "2",
    # long enough that the user asks for the same flight again while it is booked
    "FLIGHT_BOOKING_LATENCY": "6",
    # still running when the user cancels it, well before its 60 s timeout
    "HOTEL_LATENCY": "40",
    "BACKEND_SPEED": "1",
}


@asynccontextmanager
async def model_server() -> AsyncIterator[LocalOpenAIServer]:
    """The local OpenAI-protocol server, playing the flight scenario, knowing the user's
    voice."""
    async with LocalOpenAIServer(flight_scenario(seconds_per_char=0.01)) as server:
        for line in [*USER_LINES, YES_LINE, CANCEL_LINE]:
            voice = speak(line)
            server.scenario.speech.learn(line, voice.pcm, voice.sample_rate)
        yield server


def worker(livekit_server: Any, model: LocalOpenAIServer, **options: Any) -> WorkerProcess:
    """``agent.py`` against the test's LiveKit server and model server."""
    return WorkerProcess(
        livekit_url=livekit_server.url,
        api_key=livekit_server.api_key,
        api_secret=livekit_server.api_secret,
        openai_base_url=model.base_url,
        **options,
    )


@asynccontextmanager
async def user_in(livekit_server: Any, room: str) -> AsyncIterator[RoomUser]:
    """The user in ``room`` with the agent; the room is deleted afterwards, which ends
    the agent's job."""
    try:
        async with RoomUser(
            url=livekit_server.url,
            api_key=livekit_server.api_key,
            api_secret=livekit_server.api_secret,
            room=room,
        ) as user:
            await user.wait_for_agent()
            yield user
    finally:
        async with api.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        ) as lkapi:
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=room))


def model_inputs(model: LocalOpenAIServer, mode: str) -> list[Message]:
    """Every message the model was sent, request by request (as chat ``messages``)."""
    if mode == "pipeline":
        return [
            m
            for r in model.requests
            if r.path.endswith("/chat/completions")
            for m in r.body["messages"]
        ]
    return [m for r in model.realtime.responses for m in r.messages]


def unanswered(model: LocalOpenAIServer, mode: str) -> list[str]:
    """The requests of the model that no rule of the scenario answered."""
    if mode == "pipeline":
        return [
            json.dumps(r.body)[-300:]
            for r in model.requests
            if r.rule is None and "completions" in r.path
        ]
    return [json.dumps(r.messages)[-300:] for r in model.realtime.responses if r.rule is None]


@pytest.mark.parametrize("mode", ["pipeline", "realtime"])
async def test_the_flight_conversation_in_a_room_reaches_its_outcome(
    livekit_server: Any, mode: str
) -> None:
    """`agent.py start` takes the room's job and the spoken conversation of the offline
    demo reaches its outcome: the flight is booked once (the room's task feed shows its
    booking reference and nothing else of the tools' data), its confirmation is emailed
    once, the hotel search is cancelled on request, and every request of the model was
    answered by the scenario. Each line the user said reached the agent as said."""
    room = f"flight-{mode}-{secrets.token_hex(3)}"
    async with model_server() as model:
        async with worker(livekit_server, model, mode=mode, env=BACKEND) as agent:
            try:
                async with user_in(livekit_server, room) as user:
                    quiet = (
                        (lambda: not model.realtime.response_active) if mode == "realtime" else None
                    )
                    await converse(user, quiet=quiet)
                    await until(
                        lambda: bool(user.ended_tasks("reserve_hotel")),
                        timeout=10,
                        what="the hotel's end on the task feed",
                    )
            except BaseException as e:
                raise agent.failure(
                    f"the {mode} conversation failed: {e!r}\n"
                    f"heard (closest line, similarity, seconds): {model.scenario.speech.heard}\n"
                    f"unanswered: {unanswered(model, mode)}"
                ) from e
        assert agent.process is not None and agent.process.returncode == 0, agent.tail()
        assert agent.children and agent.left_running == []

    said = [line for _, line in user.lines_said]
    assert user.heard_lines() == said, user.agent_lines()
    assert [line for line in said if line != YES_LINE] == [*USER_LINES, CANCEL_LINE]
    assert said.count(YES_LINE) == 1
    assert f"Your flight is booked, reference {BOOKING_REFERENCE}." in user.agent_lines()

    # booked once, and the room saw its reference and nothing else of the tools' data
    flights = user.ended_tasks("search_and_book_flight")
    assert [(t["status"], t.get("result")) for t in flights] == [
        ("done", {"booking_reference": BOOKING_REFERENCE})
    ]
    assert [t["status"] for t in user.ended_tasks("reserve_hotel")] == ["cancelled"]
    for message in user.task_messages:
        task = message.message.get("task", {})
        assert "arguments" not in task, message
        assert "result" not in task or task["function"] == "search_and_book_flight", message

    # emailed once: the model got one confirmation, for that booking
    inputs = model_inputs(model, mode)
    emails = {
        m["tool_call_id"]: m["content"]
        for m in inputs
        if m.get("role") == "tool" and str(m.get("content", "")).startswith("Confirmation for")
    }
    assert list(emails.values()) == [f"Confirmation for {BOOKING_REFERENCE} sent."]
    assert unanswered(model, mode) == []


async def test_agent_py_dev_registers_and_takes_the_rooms_job(livekit_server: Any) -> None:
    """`python agent.py dev`, as the README runs it, registers with the LiveKit server;
    when a user joins a room it takes the job, joins with its audio track, and answers
    the task list over RPC (nothing runs yet)."""
    room = f"dev-{secrets.token_hex(3)}"
    async with model_server() as model:
        async with worker(livekit_server, model, mode="realtime", command="dev") as agent:
            async with user_in(livekit_server, room) as user:
                requested = await agent.wait_for_log(JOB_REQUESTED, timeout=10)
                assert room in requested
                answer = await user.rpc("asynctools.list_tasks", {"v": 1})
                assert answer == {"v": 1, "tasks": []}
                assert user.agent_state == "listening"
        assert agent.children and agent.left_running == []
    assert [c.path for c in model.realtime.connections] == ["/v1/realtime"]
