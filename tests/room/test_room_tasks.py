"""Background calls published into a real LiveKit room, listed and cancelled over RPC.

A real livekit-server (the ``livekit_server`` fixture), real rtc clients on both sides:
the agent's session is started with the room, the user reads the task feed and calls the
RPC methods. Every refusal is checked to change nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from livekit import api, rtc
from livekit.agents import AgentSession, room_io
from livekit.plugins.asynctools import (
    CANCEL_REASON_FROM_ROOM,
    RPC_CANCEL_TASK,
    RPC_LIST_TASKS,
    TASKS_TOPIC,
    TaskRequest,
    default_authorize,
    publish_tasks,
)
from livekit.plugins.asynctools.session_scope import existing_scope
from livekit.plugins.asynctools.testing import ScriptedLLM
from livekit.rtc.data_stream import StreamError

from ..test_cancellation import cancelled
from ..travel import Flights, Gates, TravelAgent, call, output_of, respond_to, results_requests

# the rtc SDK logs this when a room leaves while its publisher is still negotiating, as
# the shortest of these tests do: the disconnect is the test's own
pytestmark = pytest.mark.expected_log_errors("failed to negotiate the publisher")

AGENT = "agent-1"
USER = "user-1"


async def join(server: Any, room: str, identity: str) -> rtc.Room:
    """A real participant in ``room``, with a token from livekit-api."""
    token = (
        api.AccessToken(server.api_key, server.api_secret)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )
    participant = rtc.Room()
    await participant.connect(server.url, token)
    return participant


@dataclass
class Feed:
    """The task messages a participant received, in order."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    _readers: set[asyncio.Task[None]] = field(default_factory=set)

    def listen(self, room: rtc.Room) -> None:
        def on_stream(reader: rtc.TextStreamReader, _identity: str) -> None:
            task = asyncio.create_task(self._read(reader))
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

        room.register_text_stream_handler(TASKS_TOPIC, on_stream)

    async def _read(self, reader: rtc.TextStreamReader) -> None:
        try:
            text = await reader.read_all()
        except StreamError:  # cut by the user's own disconnect as a test ends
            return
        # streams can finish out of order: keep them in the order the agent sent them
        self.messages.append(json.loads(text))
        self.messages.sort(key=lambda m: m["seq"])

    def of(self, call_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("task", {}).get("call_id") == call_id]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.messages):
                await asyncio.sleep(0.02)


@dataclass
class Room:
    """An agent session in a room with its linked user, and the user's view of the feed."""

    session: AgentSession[Any]
    model: ScriptedLLM
    gates: Gates
    flights: Flights
    agent: rtc.Room
    user: rtc.Room
    feed: Feed

    async def rpc(self, method: str, payload: Any, *, caller: rtc.Room | None = None) -> Any:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        answer = await (caller or self.user).local_participant.perform_rpc(
            destination_identity=AGENT, method=method, payload=text
        )
        return json.loads(answer)


@asynccontextmanager
async def agent_in_room(server: Any, name: str, **publish_options: Any) -> AsyncIterator[Room]:
    """A text session started with a real room, linked to the user, publishing its tasks."""
    gates = Gates()
    flights = Flights(gates)
    model = ScriptedLLM(
        responder=respond_to(
            {
                "book": call("book_flight", f"{name}-c1", destination="Tokyo"),
                "hold": call("book_flight", f"{name}-c2", destination="Osaka"),
            }
        )
    )
    # the user first, as when a worker's job starts: the agent then finds them in the room
    # at once (the server tells earlier participants of a newcomer only in its next batch)
    user = await join(server, name, USER)
    feed = Feed()
    feed.listen(user)
    agent = await join(server, name, AGENT)
    session: AgentSession[Any] = AgentSession(llm=model)
    await session.start(
        TravelAgent(tools=[flights]),
        room=agent,
        room_options=room_io.RoomOptions(
            audio_input=False, audio_output=False, participant_identity=USER
        ),
    )
    publish_tasks(session, agent, **publish_options)
    try:
        yield Room(session, model, gates, flights, agent, user, feed)
    finally:
        gates.open("found", "booked")
        await session.aclose()
        await user.disconnect()
        await agent.disconnect()


def running(room: Room, call_id: str) -> bool:
    scope = existing_scope(room.session)
    return scope is not None and scope.get(call_id) is not None


async def test_a_call_is_published_in_order_with_its_progress_and_nothing_private(
    livekit_server: Any,
) -> None:
    """Start, updates and end reach the room in order; arguments and result stay private."""
    async with agent_in_room(livekit_server, "feed") as room:
        await room.session.run(user_input="book")
        room.gates.open("found")
        await room.feed.wait_for(lambda m: len(room.feed.of("feed-c1")) >= 3)
        room.gates.open("booked")
        await room.feed.wait_for(
            lambda m: (
                any(x["event"] == "reply" and x["status"] == "heard" for x in m)
                and any(x["event"] == "ended" for x in m)
            )
        )

    events = room.feed.of("feed-c1")
    assert [e["event"] for e in events] == ["started", "updated", "updated", "ended"]
    assert all(e["v"] == 1 for e in room.feed.messages)
    assert [m["seq"] for m in room.feed.messages] == list(range(1, len(room.feed.messages) + 1))
    started, first, second, ended = (e["task"] for e in events)
    assert started["function"] == "book_flight" and started["toolset"] == "flights"
    assert started["status"] == "running" and started["cancellable"] is True
    assert first["last_update"] == "Searching flights to Tokyo"
    assert second["last_update"] == "Found 3 flights, booking the cheapest"
    assert ended["status"] == "done"
    for task in (started, first, second, ended):
        assert "arguments" not in task and "result" not in task
    assert "Tokyo" not in json.dumps([started, ended])
    replies = [m for m in room.feed.messages if m["event"] == "reply"]
    assert any(r["status"] == "heard" and "feed-c1" in r["call_ids"] for r in replies)


async def test_the_redact_hook_decides_what_of_arguments_and_result_is_published(
    livekit_server: Any,
) -> None:
    """Only what the hook returns is published, per field."""
    seen: list[tuple[str, str, Any]] = []

    def redact(function_name: str, field: str, value: Any) -> Any:
        seen.append((function_name, field, value))
        if field == "result":
            return {"booking_reference": value["booking_reference"]}
        return None

    async with agent_in_room(livekit_server, "redact", redact=redact) as room:
        await room.session.run(user_input="book")
        room.gates.open("found", "booked")
        await room.feed.wait_for(lambda m: any(x["event"] == "ended" for x in m))

    ended = room.feed.of("redact-c1")[-1]["task"]
    assert ended["result"] == {"booking_reference": "FL-TOKYO"}
    assert "arguments" not in room.feed.of("redact-c1")[0]["task"]
    assert seen == [
        ("book_flight", "arguments", {"destination": "Tokyo"}),
        ("book_flight", "result", {"booking_reference": "FL-TOKYO"}),
    ]


async def test_the_linked_user_lists_and_cancels_a_call_and_the_model_is_told(
    livekit_server: Any,
) -> None:
    """list_tasks shows the running call; cancel_task stops it with a record for the model."""
    async with agent_in_room(livekit_server, "cancel") as room:
        await room.session.run(user_input="book")
        listed = await room.rpc(RPC_LIST_TASKS, {"v": 1})
        answer = await room.rpc(RPC_CANCEL_TASK, {"v": 1, "call_id": "cancel-c1"})
        await room.feed.wait_for(lambda m: any(x["event"] == "ended" for x in m))
        await room.feed.wait_for(
            lambda m: any(x["event"] == "reply" and x["status"] == "heard" for x in m[-2:])
        )
        after = await room.rpc(RPC_LIST_TASKS, {"v": 1})

    assert [t["call_id"] for t in listed["tasks"]] == ["cancel-c1"]
    assert listed["tasks"][0]["last_update"] == "Searching flights to Tokyo"
    assert answer == {"v": 1, "call_id": "cancel-c1", "status": "cancelled"}
    assert after == {"v": 1, "tasks": []}
    assert room.feed.of("cancel-c1")[-1]["task"]["status"] == "cancelled"
    record = output_of(results_requests(room.model.requests)[-1], "cancel-c1_cancelled")
    assert record == cancelled("cancel-c1", CANCEL_REASON_FROM_ROOM)
    assert room.flights.finished == []


async def refused(room: Room, method: str, payload: Any, *, caller: rtc.Room | None = None) -> Any:
    with pytest.raises(rtc.RpcError) as refusal:
        await room.rpc(method, payload, caller=caller)
    return refusal.value


async def test_another_participant_may_not_cancel(livekit_server: Any) -> None:
    """A participant the session is not linked to gets 403; the call keeps running."""
    async with agent_in_room(livekit_server, "intruder") as room:
        await room.session.run(user_input="book")
        intruder = await join(livekit_server, "intruder", "someone-else")
        try:
            error = await refused(
                room, RPC_CANCEL_TASK, {"v": 1, "call_id": "intruder-c1"}, caller=intruder
            )
            listed = await room.rpc(RPC_LIST_TASKS, {"v": 1}, caller=intruder)
            unknown = await refused(
                room, RPC_CANCEL_TASK, {"v": 1, "call_id": "nope"}, caller=intruder
            )
        finally:
            await intruder.disconnect()
        assert running(room, "intruder-c1")

    assert error.code == 403 and "someone-else may not cancel" in error.message
    # listing is open to the room; a refused caller learns nothing of unknown ids
    assert [t["call_id"] for t in listed["tasks"]] == ["intruder-c1"]
    assert unknown.code == 403


async def test_a_call_of_another_session_is_not_found(livekit_server: Any) -> None:
    """Each session's RPC sees only its own calls: another room's call id is 404."""
    async with (
        agent_in_room(livekit_server, "one") as one,
        agent_in_room(livekit_server, "two") as two,
    ):
        await two.session.run(user_input="book")
        error = await refused(one, RPC_CANCEL_TASK, {"v": 1, "call_id": "two-c1"})
        assert running(two, "two-c1")
        assert (await one.rpc(RPC_LIST_TASKS, {"v": 1}))["tasks"] == []

    assert error.code == 404 and "two-c1" in error.message


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        ("not json", 400, "JSON object"),
        ("[1, 2]", 400, "JSON object"),
        ("", 400, "JSON object"),
        ({"v": 1}, 400, "call_id"),
        ({"v": 1, "call_id": 7}, 400, "call_id"),
        ({"v": 2, "call_id": "bad-c1"}, 426, "unsupported version 2"),
        ({"call_id": "bad-c1"}, 426, "unsupported version None"),
    ],
)
async def test_a_malformed_or_unversioned_cancel_is_refused_and_changes_nothing(
    livekit_server: Any, payload: Any, code: int, words: str
) -> None:
    """Bad payloads get a clear RPC error; the call keeps running and is still listed."""
    async with agent_in_room(livekit_server, "bad") as room:
        await room.session.run(user_input="book")
        error = await refused(room, RPC_CANCEL_TASK, payload)
        listed = await room.rpc(RPC_LIST_TASKS, {"v": 1})
        assert running(room, "bad-c1")

    assert error.code == code and words in error.message
    assert [t["call_id"] for t in listed["tasks"]] == ["bad-c1"]


async def test_list_with_an_unknown_version_is_refused(livekit_server: Any) -> None:
    """The list method checks the version too."""
    async with agent_in_room(livekit_server, "listv") as room:
        error = await refused(room, RPC_LIST_TASKS, {"v": 99})
    assert error.code == 426


async def test_a_developer_hook_decides_who_may_cancel(livekit_server: Any) -> None:
    """A custom (async) authorize hook lets a supervisor cancel and can forbid listing."""
    asked: list[TaskRequest] = []

    async def authorize(request: TaskRequest) -> bool:
        asked.append(request)
        if request.caller_identity.startswith("supervisor"):
            return True
        return request.action == "cancel" and default_authorize(request)

    async with agent_in_room(livekit_server, "hook", authorize=authorize) as room:
        await room.session.run(user_input="book")
        list_refused = await refused(room, RPC_LIST_TASKS, {"v": 1})
        supervisor = await join(livekit_server, "hook", "supervisor-7")
        try:
            answer = await room.rpc(
                RPC_CANCEL_TASK, {"v": 1, "call_id": "hook-c1"}, caller=supervisor
            )
        finally:
            await supervisor.disconnect()
        await room.feed.wait_for(lambda m: any(x["event"] == "ended" for x in m))

    assert list_refused.code == 403
    assert answer["status"] == "cancelled"
    cancel = next(r for r in asked if r.action == "cancel")
    assert cancel == TaskRequest(
        "cancel", "supervisor-7", USER, call_id="hook-c1", function_name="book_flight"
    )


@pytest.mark.expected_log_errors("the authorize hook failed")
async def test_a_failing_authorize_hook_refuses(livekit_server: Any) -> None:
    """A hook that raises refuses the request (and logs why); the call keeps running."""

    def authorize(request: TaskRequest) -> bool:
        raise KeyError("boom")

    async with agent_in_room(livekit_server, "boom", authorize=authorize) as room:
        await room.session.run(user_input="book")
        error = await refused(room, RPC_CANCEL_TASK, {"v": 1, "call_id": "boom-c1"})
        assert running(room, "boom-c1")
    assert error.code == 403


@pytest.mark.expected_log_errors("the redact hook failed")
async def test_a_failing_redact_hook_publishes_nothing_of_that_field(livekit_server: Any) -> None:
    """A hook that raises or returns what JSON cannot carry publishes nothing, the rest goes."""

    def redact(function_name: str, field: str, value: Any) -> Any:
        if field == "arguments":
            raise ValueError("boom")
        return {1, 2}  # not JSON

    async with agent_in_room(livekit_server, "badhook", redact=redact) as room:
        await room.session.run(user_input="book")
        room.gates.open("found", "booked")
        await room.feed.wait_for(lambda m: any(x["event"] == "ended" for x in m))

    events = room.feed.of("badhook-c1")
    assert events[-1]["task"]["status"] == "done"
    assert all("arguments" not in e["task"] and "result" not in e["task"] for e in events)


async def test_after_the_session_closes_the_methods_are_gone(livekit_server: Any) -> None:
    """Closing the session unregisters the RPC methods and stops the feed."""
    async with agent_in_room(livekit_server, "closed") as room:
        await room.session.run(user_input="book")
        await room.session.aclose()
        error = await refused(room, RPC_LIST_TASKS, {"v": 1})
        # the call the close cancelled is published as ended, and then nothing more
        await room.feed.wait_for(lambda m: any(x["event"] == "ended" for x in m))
        count = len(room.feed.messages)
        await asyncio.sleep(0.2)
        assert len(room.feed.messages) == count

    assert error.code == rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD
    # the call the close cancelled was still published as ended
    assert room.feed.of("closed-c1")[-1]["task"]["status"] == "cancelled"
