"""The realtime websocket drops during a background call, and the session reconnects.

The agent's realtime session is the real ``openai.realtime.RealtimeModel`` client, talking
to the local server's realtime websocket (``examples/flight_booking/offline``). The server
drops the connection as a network failure does (the TCP connection closes with no close
frame) or as a server error does (close code 1011); the client connects again, sends its
conversation to the new session, and the conversation goes on. Each case checks what the
user heard, what the new session's conversation holds, and that nothing but the client's
own report of the drop was logged as an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from realtime_protocol import Item

from livekit.plugins.asynctools import NOT_HEARD_RECORD
from livekit.plugins.asynctools.testing import eventually

from ..test_faults import receipt_of, reply_statuses
from .example import (
    BOOK_FLIGHT,
    BOOKED,
    EMAILED,
    FLIGHT_ACK,
    FOUND,
    RealtimeRun,
    agent_on_local_server,
    complete_lines,
    named_ids,
)

# the client reports the lost connection itself: its receive task raises (then it
# reconnects), and an event it was sending at that moment fails; nothing else may be
# logged as an error
DROP_REPORTED = ("Error in _recv_task", "failed to send event")

DROPS = [
    pytest.param(None, id="network_drop"),
    pytest.param(1011, id="server_error_1011"),
]


@asynccontextmanager
async def realtime_agent(sockets: list[Any], *, connections: int = 2) -> AsyncIterator[RealtimeRun]:
    """The example agent on the realtime model, against a fresh local server; audio is
    generated in real time, so a reply is still being generated while it plays. The
    client is to connect ``connections`` times."""
    async with agent_on_local_server(
        "realtime", sockets, seconds_per_char=0.01, pace=1.0, connections=connections
    ) as run:
        yield run


async def _drop_and_reconnect(run: RealtimeRun, code: int | None) -> int:
    """Drop the client's connection (as ``drop_connections`` does with ``code``), then
    wait until the client has connected again, given the new session its conversation
    back, and seen the new session confirm it (the client's copy of the conversation
    holds as many messages as the new session).

    Returns:
        The index in ``run.realtime.events`` of the first event after the drop.
    """
    since = len(run.realtime.events)
    assert await run.realtime.drop_connections(code=code) == 1
    await eventually(lambda: len(run.realtime.connections) == 2)
    await eventually(lambda: any(e.type == "session.update" for e in run.realtime.events[since:]))
    rt_session = run.session.current_agent.realtime_llm_session

    def messages(items: list[Any]) -> int:
        return len(
            [i for i in items if (i["type"] if isinstance(i, dict) else i.type) == "message"]
        )

    await eventually(
        lambda: messages(rt_session.chat_ctx.items) >= messages(run.realtime.conversation) > 1
    )
    return since


def _calls_in_order(conversation: list[Item]) -> list[tuple[str, str]]:
    """The function calls and outputs of a conversation, as (type, call_id), in order."""
    return [
        (i["type"], i["call_id"])
        for i in conversation
        if i["type"] in ("function_call", "function_call_output")
    ]


def _assert_new_session_holds(run: RealtimeRun, call_ids: list[str]) -> None:
    """The new session's conversation holds, after the user's request and in order, the
    function call and the output of each of ``call_ids`` (the call, then its updates and
    result), each once: after the reconnection the model still knows the whole call (up
    to 1.7 the client gives the new session only the messages of its conversation; the
    plugin adds the call's records back).
    """
    conversation = run.realtime.conversation
    request = next(
        n
        for n, i in enumerate(conversation)
        if i.get("role") == "user" and "Tokyo" in str(i.get("content"))
    )
    wanted = [(kind, cid) for cid in call_ids for kind in ("function_call", "function_call_output")]
    held = [pair for pair in _calls_in_order(conversation[request:]) if pair in wanted]
    assert held == wanted
    assert all(_calls_in_order(conversation).count(pair) == 1 for pair in wanted)


@pytest.mark.expected_log_errors(*DROP_REPORTED)
@pytest.mark.parametrize("code", DROPS)
async def test_a_deferred_reply_cut_by_a_dropped_connection_is_spoken_in_full_after_reconnecting(
    sockets: list[Any], code: int | None
) -> None:
    """The connection drops while the model is saying the flight's progress: the client
    reconnects, the progress is asked for again on the new session and heard in full,
    once; the result that follows is heard too, and the call's records are each in the
    history once, with the update and the result marked heard."""
    async with realtime_agent(sockets) as run:
        replies = reply_statuses(run.session)
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        # a quarter of the progress is out: the reply is being generated
        await run.progress_partly_said()
        assert run.realtime.response_active
        await _drop_and_reconnect(run, code)
        await run.heard(FOUND)
        run.gates.open("booked")
        await run.heard(EMAILED)
        await eventually(lambda: replies[-1][0] == "heard")

        flight = run.call_id("search_and_book_flight")
        update, finished = f"{flight}_update_1", f"{flight}_finished"
        lines = [(line.role, line.text) for line in run.log.lines]
        cut = lines[2]
        # core keeps what was played of the cut reply; the update is then said in full
        assert cut[0] == "assistant" and FOUND.startswith(cut[1]) and cut[1] != FOUND
        assert lines == [
            ("user", BOOK_FLIGHT),
            ("assistant", FLIGHT_ACK),
            cut,
            ("assistant", FOUND),
            ("assistant", BOOKED),
            ("assistant", EMAILED),
        ]
        assert list(replies) == [
            ("scheduled", [update]),
            ("interrupted", [update]),
            ("scheduled", [update]),
            ("heard", [update]),
            ("scheduled", [finished]),
            ("heard", [finished]),
        ]
        first, again, result = run.results_requests()
        assert (first.status, first.reason) == ("failed", "connection_lost")
        assert named_ids(again.instructions) == [update]
        assert named_ids(result.instructions) == [finished]
        # the model had each output when asked to speak it, on the new session
        for asked, output in ((again, update), (result, finished)):
            assert output in {m.get("tool_call_id") for m in asked.messages if m["role"] == "tool"}
        assert (again.status, result.status) == ("completed", "completed")
        assert receipt_of(run.session, update) == receipt_of(run.session, finished) == "heard"
        history = [i.call_id for i in run.session.history.items if i.type == "function_call"]
        assert sorted(history) == sorted(set(history))
        assert {update, finished} <= set(history)
        assert run.backend.emails == ["FL-129894"]
        _assert_new_session_holds(run, [flight, update, f"{flight}_update_2", finished])


@pytest.mark.expected_log_errors(*DROP_REPORTED)
@pytest.mark.parametrize("code", DROPS)
async def test_a_connection_dropped_while_a_call_runs_loses_none_of_its_later_results(
    sockets: list[Any], code: int | None
) -> None:
    """The connection drops while the flight search runs in the background and nobody
    speaks: after the client reconnects, the progress and the result reach the new
    session and are heard in full, once each, in order."""
    async with realtime_agent(sockets) as run:
        replies = reply_statuses(run.session)
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        await eventually(lambda: not run.realtime.response_active)
        since = await _drop_and_reconnect(run, code)
        run.gates.open("found")
        await run.heard(FOUND)
        run.gates.open("booked")
        await run.heard(EMAILED)
        await eventually(lambda: replies[-1][0] == "heard")

        flight = run.call_id("search_and_book_flight")
        update, finished = f"{flight}_update_1", f"{flight}_finished"
        assert [(line.role, line.text, line.interrupted) for line in run.log.lines] == [
            ("user", BOOK_FLIGHT, False),
            ("assistant", FLIGHT_ACK, False),
            ("assistant", FOUND, False),
            ("assistant", BOOKED, False),
            ("assistant", EMAILED, False),
        ]
        assert list(replies) == [
            ("scheduled", [update]),
            ("heard", [update]),
            ("scheduled", [finished]),
            ("heard", [finished]),
        ]
        assert [named_ids(r.instructions) for r in run.results_requests()] == [
            [update],
            [finished],
        ]
        # every output went to the new session, once
        sent_after = [
            e.payload["item"]["call_id"]
            for e in run.realtime.events[since:]
            if e.type == "conversation.item.create"
            and e.payload["item"]["type"] == "function_call_output"
        ]
        assert sent_after.count(update) == sent_after.count(finished) == 1
        history = [i.call_id for i in run.session.history.items if i.type == "function_call"]
        assert sorted(history) == sorted(set(history))
        assert run.backend.emails == ["FL-129894"]
        _assert_new_session_holds(run, [flight, update, f"{flight}_update_2", finished])


@pytest.mark.expected_log_errors(*DROP_REPORTED)
async def test_a_reply_cut_by_a_drop_is_recorded_as_not_heard_when_the_session_ends_first(
    sockets: list[Any],
) -> None:
    """The connection drops while the progress is being said and the session closes
    before it is said again: the history records that the user never heard it, once,
    and the update's receipt says it was not given."""
    async with realtime_agent(sockets, connections=1) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.progress_partly_said()
        await run.realtime.drop_connections()
        flight = run.call_id("search_and_book_flight")

    update = f"{flight}_update_1"
    records = [
        i.text_content
        for i in run.session.history.items
        if i.type == "message" and "were never told to the user" in (i.text_content or "")
    ]
    assert records == [
        NOT_HEARD_RECORD.format(call_ids=[update, f"{flight}_cancelled"], heard="")
    ], records
    assert receipt_of(run.session, update) == "not_given"
    assert FOUND not in [line.text for line in run.log.lines]


@pytest.mark.expected_log_errors(*DROP_REPORTED)
async def test_a_result_that_lands_while_the_connection_is_down_reaches_the_new_session(
    sockets: list[Any],
) -> None:
    """The flight's progress arrives while the connection is down: it is heard as soon
    as the client has reconnected, and the new session holds the call and each of its
    outputs, as function calls, after the user's request and in order."""
    async with realtime_agent(sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        await eventually(lambda: not run.realtime.response_active)
        assert await run.realtime.drop_connections() == 1
        run.gates.open("found")
        # the update sent into the dropped connection goes unacknowledged (the client waits
        # 5 s for that), then the plugin adds the outputs again, on the new connection
        await run.heard(FOUND, timeout=12.0)
        run.gates.open("booked")
        await run.heard(EMAILED)

        flight = run.call_id("search_and_book_flight")
        assert complete_lines(run.log) == [FLIGHT_ACK, FOUND, BOOKED, EMAILED]
        _assert_new_session_holds(
            run, [flight, f"{flight}_update_1", f"{flight}_update_2", f"{flight}_finished"]
        )
