"""Delivery ``now`` as Gemini Live's ``INTERRUPT`` scheduling, end to end.

With ``tool_behavior=NON_BLOCKING``, Gemini schedules each function response as its
``scheduling`` says: ``INTERRUPT`` cuts the turn the model has under way and answers at
once, ``WHEN_IDLE`` (the default) waits for that turn to end. The plugin sends a call's
own response (its first update, or an immediate result) with ``delivery="now"`` as
``INTERRUPT``, through livekit-plugins-google's public ``update_options``, and gives the
model back its own scheduling for every other response.

The agent runs on the real ``google.realtime.RealtimeModel`` client against the local
Gemini Live server over TLS on 127.0.0.1. Core sends a call's response only once no agent
speech is playing or queued, and livekit-plugins-google opens a speech for a Gemini turn
at its first content (the user's transcript included): what ``INTERRUPT`` can cut is a
turn Gemini has begun and the client has nothing of yet. Here that is the answer the
model prepares to the user's next question: the user's transcript is off, and the server
takes :data:`LATENCY` seconds before a turn's first audio, as the service does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from gemini_server import GeminiLiveServer
from openai_server import Answer, LocalOpenAIServer, Rule
from scenario import flight_scenario

from livekit.agents import Agent, AgentSession, function_tool
from livekit.agents.types import NOT_GIVEN
from livekit.plugins.asynctools import AsyncRunContext, AsyncToolset, BackgroundResult
from livekit.plugins.asynctools.testing import ConversationLog
from livekit.plugins.asynctools.testing.audio import RealTimeSpeaker

from ..travel import Gates
from .example import (
    BOOK_FLIGHT,
    FLIGHT_ACK,
    FOUND,
    HOTEL_ACK,
    RESERVE_HOTEL,
    complete_lines,
    realtime_client_missing,
)


def _scheduling_unsupported() -> str | None:
    """Why this release's google plugin cannot run these tests, or None."""
    if (missing := realtime_client_missing("gemini")) is not None:
        return missing
    from livekit.plugins.google.realtime import realtime_api

    update = getattr(realtime_api.RealtimeSession, "update_options", None)
    if update is None or "tool_response_scheduling" not in inspect.signature(update).parameters:
        return "this livekit-plugins-google cannot change a session's response scheduling"
    return None


pytestmark = pytest.mark.skipif(
    (_missing := _scheduling_unsupported()) is not None, reason=_missing or ""
)

LATENCY = 0.8
"""Seconds the local Gemini takes before a turn's first audio."""

ASK_WEATHER = "What is the weather like in Tokyo in December?"
WEATHER = "Tokyo in December is cool and dry, around ten degrees, with clear skies."


class Travel(AsyncToolset):
    """Once ``first`` opens, the flight tool answers ``now`` (a first update, or with
    ``result_first`` its result), then says ``FOUND`` (``now``) once ``found`` opens; the
    hotel tool answers ``idle`` once ``hotel`` opens. Both then run until the session ends."""

    def __init__(self, gates: Gates, *, result_first: bool = False) -> None:
        super().__init__(id="travel")
        self.gates = gates
        self.result_first = result_first

    @function_tool
    async def search_and_book_flight(
        self, ctx: AsyncRunContext, origin: str, destination: str, date: str
    ) -> Any:
        """Search flights and book the cheapest one."""
        await self.gates.wait("first")
        message = f"Searching flights from {origin} to {destination} on {date}."
        if self.result_first:
            return BackgroundResult(message, delivery="now")
        await ctx.update(message, delivery="now")
        await self.gates.wait("found")
        await ctx.update(FOUND, delivery="now")
        await self.gates.wait("never")
        return "Booked."

    @function_tool
    async def reserve_hotel(self, ctx: AsyncRunContext, city: str, nights: int) -> str:
        """Reserve a hotel."""
        await self.gates.wait("hotel")
        await ctx.update(f"Looking for a hotel in {city} for {nights} nights.")
        await self.gates.wait("never")
        return "Reserved."


@dataclass
class Run:
    """The agent on its Gemini Live model, the local server, and what the user heard."""

    live: GeminiLiveServer
    model: Any
    gates: Gates
    log: ConversationLog

    async def heard(self, text: str, *, timeout: float = 5.0) -> None:
        """Wait until the user has heard, in full, an agent line starting with ``text``."""
        await self.log.wait_for(
            lambda log: any(line.startswith(text) for line in complete_lines(log)),
            timeout=timeout,
        )

    async def call_issued(self, name: str) -> str:
        """Wait until the model called ``name`` and ended that turn; its call id."""
        async with asyncio.timeout(5):
            while not (
                ids := [
                    cid
                    for t in self.live.turns
                    if t.status != "in_progress"
                    for cid, n in t.tool_calls
                    if n == name
                ]
            ):
                await asyncio.sleep(0.01)
        return ids[0]

    async def response(self, call_id: str) -> tuple[dict[str, Any], bool]:
        """Wait for the function response to ``call_id``; it and whether the model had a
        turn under way when it came."""
        async with asyncio.timeout(5):
            while True:
                for m in self.live.messages:
                    for r in m.payload.get("toolResponse", {}).get("functionResponses", []):
                        if r.get("id") == call_id:
                            return r, m.generating
                await asyncio.sleep(0.01)

    async def user_asks_while_the_model_prepares(self, text: str, gate: str) -> None:
        """The user says ``text``; while the model prepares its answer (nothing of it sent
        yet), ``gate`` opens."""
        await self.live.user_says(text, duration=0.1)
        turn = self.live.turns[-1]
        assert turn.trigger == "user" and turn.status == "in_progress" and not turn.text
        self.gates.open(gate)

    def turns(self) -> list[tuple[str, str]]:
        return [(t.trigger, t.status) for t in self.live.turns]


@asynccontextmanager
async def gemini_run(
    sockets: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    *,
    result_first: bool = False,
    non_blocking: bool = True,
    scheduling: Any = NOT_GIVEN,
) -> AsyncIterator[Run]:
    """The agent on Gemini Live against a fresh local server whose turns take
    :data:`LATENCY`; ``scheduling`` is the developer's ``tool_response_scheduling``."""
    from google.genai import types

    from livekit.plugins import google

    scenario = flight_scenario(seconds_per_char=0.004)
    scenario.rules.insert(
        0,
        Rule(
            "talk about the weather",
            lambda m: m[-1].get("role") == "user" and "weather" in str(m[-1].get("content")),
            Answer(text=WEATHER),
        ),
    )
    gates = Gates()
    async with LocalOpenAIServer(scenario) as server:
        server.gemini.latency = LATENCY
        # google-genai reads SSL_CERT_FILE when its client is made, at session start
        monkeypatch.setenv("SSL_CERT_FILE", server.certificate.ca_file)
        options: dict[str, Any] = {"tool_response_scheduling": scheduling}
        if non_blocking:
            options["tool_behavior"] = types.Behavior.NON_BLOCKING
        model = google.realtime.RealtimeModel(
            http_options=types.HttpOptions(base_url=server.gemini_base_url),
            api_key="offline",
            # no transcript of the user's words: the client learns of Gemini's answer to
            # them from its first audio (see the module's docstring)
            input_audio_transcription=None,
            **options,
        )
        session: AgentSession[Any] = AgentSession(llm=model)
        session.output.audio = RealTimeSpeaker()
        log = ConversationLog(session)
        tools = [Travel(gates, result_first=result_first)]
        await session.start(Agent(instructions="You book travel.", tools=tools))
        run = Run(server.gemini, model, gates, log)
        try:
            yield run
        finally:
            await session.aclose()
            await model.aclose()
        assert [t.trigger for t in run.live.turns if t.status == "failed"] == []
        assert run.live.dropped_responses == []
        assert sockets and {address[0] for address in sockets} == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("result_first", "spoken"),
    [(False, FLIGHT_ACK), (True, "Done.")],
    ids=["first_update", "immediate_result"],
)
async def test_a_now_first_answer_interrupts_the_answer_gemini_is_preparing(
    sockets: list[Any], monkeypatch: pytest.MonkeyPatch, result_first: bool, spoken: str
) -> None:
    """Under NON_BLOCKING, a first update with ``delivery="now"`` (or a result returned
    before any update with ``BackgroundResult(..., delivery="now")``) reaches Gemini as the
    call's response with ``scheduling: INTERRUPT`` while the model prepares its answer to
    the user's next question: Gemini drops that answer and speaks the response at once."""
    async with gemini_run(sockets, monkeypatch, result_first=result_first) as run:
        await run.live.user_says(BOOK_FLIGHT, duration=0.1)
        flight = await run.call_issued("search_and_book_flight")
        await run.user_asks_while_the_model_prepares(ASK_WEATHER, "first")
        response, generating = await run.response(flight)
        await run.heard(spoken)

        assert response["scheduling"] == "INTERRUPT" and generating
        assert "Searching flights from Paris to Tokyo" in response["response"]["output"]
        assert run.turns()[:3] == [
            ("user", "completed"),  # the call
            ("user", "interrupted"),  # the weather, cut before a word of it was sent
            ("tool_response", "completed"),  # the response, at once
        ]
        assert complete_lines(run.log) == [spoken]


async def test_after_the_interrupting_response_the_next_one_waits_for_the_idle_model(
    sockets: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the ``now`` response went out, the model's scheduling is its own again: the
    hotel's ``idle`` first update goes out without ``INTERRUPT`` (as before: none set,
    Gemini's ``WHEN_IDLE``), so the answer the model prepares is spoken first and the
    update after it."""
    async with gemini_run(sockets, monkeypatch) as run:
        await run.live.user_says(BOOK_FLIGHT, duration=0.1)
        flight = await run.call_issued("search_and_book_flight")
        run.gates.open("first")
        await run.heard(FLIGHT_ACK)
        await run.live.user_says(RESERVE_HOTEL, duration=0.1)
        hotel = await run.call_issued("reserve_hotel")
        await run.user_asks_while_the_model_prepares(ASK_WEATHER, "hotel")
        hotel_response, generating = await run.response(hotel)
        await run.heard(HOTEL_ACK)

        flight_response, _ = await run.response(flight)
        assert flight_response["scheduling"] == "INTERRUPT"
        assert "scheduling" not in hotel_response and generating
        assert run.model._opts.tool_response_scheduling is NOT_GIVEN
        assert complete_lines(run.log) == [FLIGHT_ACK, WEATHER, HOTEL_ACK]
        assert ("user", "interrupted") not in run.turns()


async def test_without_non_blocking_now_sends_no_interrupt_and_the_floor_decides(
    sockets: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without NON_BLOCKING, Gemini answers a call's response as soon as it comes and reads
    no scheduling: a ``now`` first update goes out without one and the model's options stay
    untouched; a later ``now`` update is a content turn the plugin's floor has spoken."""
    async with gemini_run(sockets, monkeypatch, non_blocking=False) as run:
        await run.live.user_says(BOOK_FLIGHT, duration=0.1)
        flight = await run.call_issued("search_and_book_flight")
        run.gates.open("first")
        response, _ = await run.response(flight)
        await run.heard(FLIGHT_ACK)
        run.gates.open("found")
        await run.heard(FOUND)

        assert "scheduling" not in response
        assert run.model._opts.tool_response_scheduling is NOT_GIVEN
        responses = run.live.received("toolResponse")
        assert [r["id"] for m in responses for r in m["functionResponses"]] == [flight]
        assert complete_lines(run.log) == [FLIGHT_ACK, FOUND]


async def test_the_developers_own_scheduling_is_given_back_after_a_now_response(
    sockets: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model set to ``tool_response_scheduling=SILENT`` by its developer: the ``now``
    first update interrupts and is spoken, then the hotel's first update is ``SILENT``
    again, not ``WHEN_IDLE``: Gemini starts no turn for it."""
    from google.genai import types

    silent = types.FunctionResponseScheduling.SILENT
    async with gemini_run(sockets, monkeypatch, scheduling=silent) as run:
        await run.live.user_says(BOOK_FLIGHT, duration=0.1)
        flight = await run.call_issued("search_and_book_flight")
        run.gates.open("first")
        await run.heard(FLIGHT_ACK)
        await run.live.user_says(RESERVE_HOTEL, duration=0.1)
        hotel = await run.call_issued("reserve_hotel")
        run.gates.open("hotel")
        hotel_response, _ = await run.response(hotel)
        await run.live.user_says(ASK_WEATHER, duration=0.1)
        await run.heard(WEATHER)

        flight_response, _ = await run.response(flight)
        assert [flight_response["scheduling"], hotel_response["scheduling"]] == [
            "INTERRUPT",
            "SILENT",
        ]
        assert run.model._opts.tool_response_scheduling == silent
        assert [trigger for trigger, _ in run.turns()] == ["user", "tool_response", "user", "user"]
        assert complete_lines(run.log) == [FLIGHT_ACK, WEATHER]
