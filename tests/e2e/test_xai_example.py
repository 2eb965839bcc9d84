"""The worked flight-booking example on xAI's realtime model, end to end.

The agent's realtime session is the real ``xai.realtime.RealtimeModel`` client (an
OpenAI realtime client with xAI's changes), talking to the local xAI endpoint
(``examples/flight_booking/offline/xai_realtime.py``: the OpenAI-protocol server with
xAI's differences) on 127.0.0.1; the user's turns are reported by the server's scripted
turn detection, as xAI's would be. Each test checks what the user heard and what the model
was sent, in order.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flight_booking"
sys.path[:0] = [str(EXAMPLE / "offline"), str(EXAMPLE)]


def _xai_realtime_client_missing() -> str | None:
    """Why the release's xai plugin cannot run these tests, or None."""
    if importlib.util.find_spec("livekit.plugins.xai") is None:
        return "livekit-plugins-xai is not installed"
    import inspect

    from livekit.plugins import xai

    model = getattr(getattr(xai, "realtime", None), "RealtimeModel", None)
    if model is None:
        return "this livekit-plugins-xai has no realtime.RealtimeModel"
    if "base_url" not in inspect.signature(model).parameters:
        return "this livekit-plugins-xai's RealtimeModel takes no base_url"
    return None


pytestmark = pytest.mark.skipif(
    (_missing := _xai_realtime_client_missing()) is not None, reason=_missing or ""
)

from agent import FlightAgent, build_session  # noqa: E402
from openai_server import Answer, Rule  # noqa: E402
from realtime_server import ResponseRecord  # noqa: E402
from scenario import RESULTS_MARKER, flight_scenario  # noqa: E402
from xai_realtime import FORCE_MESSAGE_RULE, LocalXaiServer, XaiRealtimeServer  # noqa: E402

from livekit.agents import AgentSession  # noqa: E402
from livekit.plugins.asynctools.testing import ConversationLog, eventually  # noqa: E402
from livekit.plugins.asynctools.testing.audio import RealTimeSpeaker  # noqa: E402

from ..travel import Gates  # noqa: E402
from .example import (  # noqa: E402
    BOOK_FLIGHT,
    BOOKED,
    EMAILED,
    FLIGHT_ACK,
    FOUND,
    GatedBackend,
    complete_lines,
)

RESERVE_HOTEL = "Also reserve a hotel in Tokyo for 4 nights."
CANCEL_HOTEL = "Cancel the hotel."
HOLD_ON = "Hold on a second."
HOTEL_ACK = "Sure! Looking for a hotel in Tokyo for 4 nights. I'll keep you posted."
TAKE_YOUR_TIME = "Sure, take your time."
CANCEL_CONFIRMED = "Done, I stopped the hotel search."
CANCEL_RESULT = "The hotel search is cancelled."
FILLER = "Still booking your flight, one moment."


@dataclass
class XaiRun:
    """The agent on its xAI realtime session, the local server, and what the user heard."""

    server: LocalXaiServer
    session: AgentSession[Any]
    gates: Gates
    backend: GatedBackend
    log: ConversationLog
    sockets: list[Any]

    @property
    def realtime(self) -> XaiRealtimeServer:
        return self.server.realtime

    async def user_says(self, text: str, *, duration: float = 0.1) -> None:
        await self.realtime.user_says(text, duration=duration)

    async def heard(self, text: str) -> None:
        """Wait until the user has heard, in full, an agent line starting with ``text``."""
        await self.log.wait_for(
            lambda log: any(line.startswith(text) for line in complete_lines(log))
        )

    def call_id(self, name: str, index: int = 0) -> str:
        """The call id the model gave its ``index``-th call of ``name``."""
        calls = [cid for r in self.realtime.responses for cid, n in r.tool_calls if n == name]
        return calls[index]

    def outputs_sent(self) -> list[str]:
        """Call ids of the function-call outputs the client added to the conversation."""
        return [
            e["item"]["call_id"]
            for e in self.realtime.received("conversation.item.create")
            if e["item"]["type"] == "function_call_output"
        ]

    def results_requests(self) -> list[ResponseRecord]:
        """The responses asked for to speak background results, in order."""
        return [r for r in self.realtime.responses if RESULTS_MARKER in (r.instructions or "")]


def _named_ids(instructions: str | None) -> list[str]:
    """The call ids a results reply's instructions name."""
    found = re.search(r"call_ids: \[(.*?)\]", instructions or "")
    return re.findall(r"'([^']+)'", found.group(1)) if found else []


@asynccontextmanager
async def xai_agent(
    sockets: list[Any],
    *,
    seconds_per_char: float = 0.004,
    pace: float = 2.0,
    booking_filler: bool = False,
) -> AsyncIterator[XaiRun]:
    """The example agent on xAI's realtime model, against a fresh local xAI endpoint."""
    scenario = flight_scenario(seconds_per_char=seconds_per_char)
    scenario.rules.append(
        Rule(
            "answer a remark",
            lambda m: m[-1].get("role") == "user" and m[-1].get("content") == HOLD_ON,
            Answer(text=TAKE_YOUR_TIME),
        )
    )
    gates = Gates()
    backend = GatedBackend(gates)
    async with LocalXaiServer(scenario) as server:
        server.realtime.pace = pace
        session = build_session(mode="xai", base_url=server.base_url, api_key="offline")
        session.output.audio = RealTimeSpeaker()
        log = ConversationLog(session)
        await session.start(
            FlightAgent(backend=backend, confirm_payment=False, booking_filler=booking_filler)
        )
        run = XaiRun(server, session, gates, backend, log, sockets)
        try:
            yield run
        finally:
            await session.aclose()
            await session.llm.aclose()
        _assert_protocol_invariants(run)


def _assert_protocol_invariants(run: XaiRun) -> None:
    """What must hold in every conversation: replies asked for only when the conversation
    was idle, no client event refused, nothing the model had deleted but what is added
    again, every response matched by the scenario, every socket local."""
    busy = [
        (e.payload.get("event_id"), e.response_active, e.user_speaking)
        for e in run.realtime.events
        if e.type == "response.create" and (e.response_active or e.user_speaking)
    ]
    assert busy == [], "replies asked for while a response was active or the user spoke"
    created = [e["item"].get("id") for e in run.realtime.received("conversation.item.create")]
    for deleted in run.realtime.received("conversation.item.delete"):
        assert created.count(deleted["item_id"]) == 2, "deleted and not added again"
    assert [r.id for r in run.realtime.responses if r.rule is None] == []
    assert run.sockets and {address[0] for address in run.sockets} == {"127.0.0.1"}
    host = run.server.base_url.split("/")[2]
    model = run.session.llm.model
    assert [(c.path, c.model, c.host) for c in run.realtime.connections] == [
        ("/v1/realtime", model, host)
    ]
    assert run.server.requests == []
    # voice and turn detection where xAI reads them (top level), or, from clients that
    # nest them as OpenAI does, left unread: xAI's defaults (Ara, server VAD) apply
    first = run.realtime.received("session.update")[0]["session"]
    nested = ["audio.output.voice", "audio.input.turn_detection"]
    assert run.realtime.ignored == ([] if "voice" in first else nested)
    assert run.realtime.voice == "Ara"


async def test_a_booking_is_acknowledged_then_its_progress_and_result_are_spoken(
    sockets: list[Any],
) -> None:
    """On xAI, the user hears the acknowledgement, the progress, then the result and the
    email it leads to; the model receives the call's outputs as ``<call_id>``,
    ``_update_1``, the silent ``_update_2`` and ``_finished``, each results reply naming
    the ones it is about (never the silent one)."""
    async with xai_agent(sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.heard(FOUND)
        run.gates.open("booked")
        await run.heard(EMAILED)

        flight = run.call_id("search_and_book_flight")
        email = run.call_id("send_confirmation_email")
        assert complete_lines(run.log) == [FLIGHT_ACK, FOUND, BOOKED, EMAILED]
        steps = [f"{flight}_update_1", f"{flight}_update_2", f"{flight}_finished"]
        assert run.outputs_sent() == [flight, *steps, email]
        results = run.results_requests()
        assert [_named_ids(r.instructions) for r in results] == [
            [f"{flight}_update_1"],
            [f"{flight}_finished"],
        ]
        # xAI takes no per-response tool_choice: the plugin sends none, even for progress
        assert [r.tool_choice for r in results] == [None, None]
        assert results[1].tool_calls == [(email, "send_confirmation_email")]
        assert run.backend.emails == ["FL-129894"]


async def test_a_deferred_reply_the_user_talks_over_is_spoken_again(sockets: list[Any]) -> None:
    """The user starts speaking while the progress is being said: xAI's turn detection
    cuts that reply off, the user's words are answered, then the same progress is asked
    for again and said in full."""
    async with xai_agent(sockets, seconds_per_char=0.01, pace=1.0) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await eventually(
            lambda: (
                bool(results := run.results_requests()) and len(results[0].text) >= len(FOUND) // 4
            )
        )
        await run.user_says(HOLD_ON)
        await run.heard(FOUND)
        run.gates.open("booked")
        await run.heard(EMAILED)

        flight = run.call_id("search_and_book_flight")
        lines = [(line.role, line.text, line.interrupted) for line in run.log.lines]
        cut = lines[2]
        assert cut[0] == "assistant" and cut[2] and FOUND.startswith(cut[1]) and cut[1] != FOUND
        assert lines == [
            ("user", BOOK_FLIGHT, False),
            ("assistant", FLIGHT_ACK, False),
            cut,
            ("user", HOLD_ON, False),
            ("assistant", TAKE_YOUR_TIME, False),
            ("assistant", FOUND, False),
            ("assistant", BOOKED, False),
            ("assistant", EMAILED, False),
        ]
        first, again, _ = run.results_requests()
        assert _named_ids(first.instructions) == _named_ids(again.instructions)
        assert _named_ids(again.instructions) == [f"{flight}_update_1"]
        assert (first.status, first.reason) == ("cancelled", "turn_detected")
        assert again.status == "completed"


async def test_results_of_two_tasks_that_arrive_together_are_spoken_in_one_reply(
    sockets: list[Any],
) -> None:
    """A flight and a hotel run at once; the flight's progress and the hotel's result
    arrive while the user is speaking: after the user's turn is answered, one reply
    covers both, and the model had both outputs before it was asked."""
    async with xai_agent(sockets) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        await run.user_says(RESERVE_HOTEL)
        await run.heard(HOTEL_ACK)
        flight = run.call_id("search_and_book_flight")
        hotel = run.call_id("reserve_hotel")

        speaking = asyncio.create_task(run.user_says(HOLD_ON, duration=0.5))
        await eventually(lambda: run.realtime.user_speaking)
        run.gates.open("found", "hotel")
        await eventually(lambda: f"{hotel}_finished" in run.outputs_sent())
        await speaking
        await run.heard("Found 3 flights")
        run.gates.open("booked")
        await run.heard(EMAILED)

        results = run.results_requests()[0]
        assert _named_ids(results.instructions) == [f"{flight}_update_1", f"{hotel}_finished"]
        sent = {m.get("tool_call_id") for m in results.messages if m["role"] == "tool"}
        assert {f"{flight}_update_1", f"{hotel}_finished"} <= sent
        heard = complete_lines(run.log)
        assert heard[:3] == [FLIGHT_ACK, HOTEL_ACK, TAKE_YOUR_TIME]
        assert heard[4:] == [BOOKED, EMAILED]
        assert re.fullmatch(
            re.escape(FOUND) + r" Your hotel is reserved, reference HT-\d{6}\.", heard[3]
        )


async def test_a_cancelled_task_is_recorded_for_the_model_and_its_end_spoken_in_full(
    sockets: list[Any],
) -> None:
    """The user cancels the hotel: the model calls ``cancel_task`` with the hotel's call
    id, the search is recorded as ``<call_id>_cancelled`` in the model's conversation
    before it is asked to speak it, and every reply runs to its end."""
    async with xai_agent(sockets, seconds_per_char=0.01, pace=1.0) as run:
        await run.user_says(RESERVE_HOTEL)
        await run.heard(HOTEL_ACK)
        await run.user_says(CANCEL_HOTEL)
        await run.heard(CANCEL_RESULT)
        hotel, cancel = run.call_id("reserve_hotel"), run.call_id("cancel_task")

        assert [(line.role, line.text, line.interrupted) for line in run.log.lines] == [
            ("user", RESERVE_HOTEL, False),
            ("assistant", HOTEL_ACK, False),
            ("user", CANCEL_HOTEL, False),
            ("assistant", CANCEL_CONFIRMED, False),
            ("assistant", CANCEL_RESULT, False),
        ]
        (call,) = [
            i
            for i in run.realtime.conversation
            if i["type"] == "function_call" and i["call_id"] == cancel
        ]
        assert json.loads(call["arguments"]) == {"call_id": hotel}
        assert list(dict.fromkeys(run.outputs_sent())) == [hotel, f"{hotel}_cancelled", cancel]
        (results,) = run.results_requests()
        assert _named_ids(results.instructions) == [f"{hotel}_cancelled"]
        assert f"{hotel}_cancelled" in {
            m.get("tool_call_id") for m in results.messages if m["role"] == "tool"
        }
        assert [r.status for r in run.realtime.responses] == ["completed"] * 5


async def test_the_booking_filler_is_spoken_word_for_word(sockets: list[Any]) -> None:
    """While the booking runs long in silence, the filler line is heard as written, between
    the progress and the result: a reply the model is asked for with the line to say
    (the plugin speaks fillers that way on every realtime model without a TTS)."""
    async with xai_agent(sockets, booking_filler=True) as run:
        await run.user_says(BOOK_FLIGHT)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.heard(FOUND)
        await run.heard(FILLER)
        run.gates.open("booked")
        await run.heard(EMAILED)

        assert complete_lines(run.log) == [FLIGHT_ACK, FOUND, FILLER, BOOKED, EMAILED]
        (filler,) = [r for r in run.realtime.responses if r.text == FILLER]
        assert FILLER in (filler.instructions or "") and filler.tool_calls == []


async def test_say_reaches_xai_as_a_force_message(sockets: list[Any]) -> None:
    """Where the xAI client speaks ``say()`` text itself (``supports_say``), the text goes
    to xAI as a ``force_message`` item: xAI speaks it word for word without asking the
    model, and the user hears it."""
    async with xai_agent(sockets) as run:
        if not getattr(run.session.llm.capabilities, "supports_say", False):
            pytest.skip("this livekit-plugins-xai's realtime model does not speak say() itself")
        await run.session.say(FILLER)
        await run.heard(FILLER)

        (item,) = [e["item"] for e in run.realtime.received("conversation.item.create")]
        assert (item["type"], item["content"]) == (
            "force_message",
            [{"type": "output_text", "text": FILLER}],
        )
        (spoken,) = run.realtime.responses
        assert (spoken.rule, spoken.text, spoken.event_id, spoken.status) == (
            FORCE_MESSAGE_RULE,
            FILLER,
            None,
            "completed",
        )
        assert complete_lines(run.log) == [FILLER]
