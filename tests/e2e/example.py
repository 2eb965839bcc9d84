"""The worked example's agent on a realtime model, against a fresh local protocol server.

One harness for every realtime model the example runs on: OpenAI's (``realtime``), xAI's
(``xai``, the OpenAI protocol with xAI's differences) and Gemini Live (``gemini``). The
agent's session is the real provider plugin's client, talking to the local server on
127.0.0.1; the user's turns are reported by the server's scripted turn detection.
:func:`agent_on_local_server` starts it all, and once the conversation is over checks
what must hold in every conversation on that model's protocol (:mod:`.protocol_checks`).

Example::

    async def test_a_booking(sockets: list[Any]) -> None:
        async with agent_on_local_server("xai", sockets) as run:
            await run.user_says(BOOK_FLIGHT)
            await run.heard(FLIGHT_ACK)
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from agent import FlightAgent, build_session
from flights import Booking, Flight, HotelReservation, TravelBackend
from gemini_server import GeminiLiveServer, Turn
from openai_server import Answer, LocalOpenAIServer, Rule
from realtime_protocol import ResponseRecord
from realtime_server import RealtimeServer
from scenario import RESULTS_MARKER, flight_scenario
from xai_realtime import LocalXaiServer

from livekit.agents import Agent, AgentSession
from livekit.plugins.asynctools.testing import ConversationLog, eventually
from livekit.plugins.asynctools.testing.audio import RealTimeSpeaker

from ..travel import Gates
from .protocol_checks import assert_protocol_held

Model = Literal["realtime", "xai", "gemini"]
"""A realtime model the example runs on, as ``build_session``'s ``mode`` names it."""

# what the user says and hears in the flight conversation, on every realtime model
BOOK_FLIGHT = "Book me a flight from Paris to Tokyo on December 3rd."
RESERVE_HOTEL = "Also reserve a hotel in Tokyo for 4 nights."
HOLD_ON = "Hold on a second."
CANCEL_HOTEL = "Cancel the hotel."
FLIGHT_ACK = "Sure! Searching flights from Paris to Tokyo on 2026-12-03. I'll keep you posted."
FOUND = "Found 3 flights. The cheapest is LK992 at 13:45 for 192 euros."
BOOKED = "Your flight is booked, reference FL-129894."
EMAILED = "I've emailed you the confirmation."
HOTEL_ACK = "Sure! Looking for a hotel in Tokyo for 4 nights. I'll keep you posted."
TAKE_YOUR_TIME = "Sure, take your time."
CANCEL_CONFIRMED = "Done, I stopped the hotel search."
CANCEL_RESULT = "The hotel search is cancelled."

# the provider plugin of each model, and the option that points its client at a server
_CLIENTS: dict[Model, tuple[str, str]] = {
    "realtime": ("openai", "base_url"),
    "xai": ("xai", "base_url"),
    "gemini": ("google", "http_options"),
}


def realtime_client_missing(model: Model) -> str | None:
    """Why the installed provider plugin cannot run ``model`` against a local server.

    Returns:
        The reason (the plugin is not installed, has no realtime client, or its client
        takes no endpoint), or None when the tests can run.
    """
    plugin, endpoint = _CLIENTS[model]
    package = f"livekit-plugins-{plugin}"
    if importlib.util.find_spec(f"livekit.plugins.{plugin}") is None:
        return f"{package} is not installed"
    module = importlib.import_module(f"livekit.plugins.{plugin}")
    client = getattr(getattr(module, "realtime", None), "RealtimeModel", None)
    if client is None:
        return f"this {package} has no realtime.RealtimeModel"
    if endpoint not in inspect.signature(client).parameters:
        return f"this {package}'s RealtimeModel takes no {endpoint}"
    return None


def needs_realtime_client(model: Model) -> pytest.MarkDecorator:
    """Skip the tests it marks when the installed plugin cannot run ``model`` locally.

    Example::

        pytestmark = needs_realtime_client("gemini")
    """
    missing = realtime_client_missing(model)
    return pytest.mark.skipif(missing is not None, reason=missing or "")


def complete_lines(log: ConversationLog) -> list[str]:
    """The agent's lines the user heard in full (not cut off), in order."""
    return [line.text for line in log.lines if line.role == "assistant" and not line.interrupted]


def named_ids(instructions: str | None) -> list[str]:
    """The call ids a results reply's instructions name."""
    found = re.search(r"call_ids: \[(.*?)\]", instructions or "")
    return re.findall(r"'([^']+)'", found.group(1)) if found else []


class GatedBackend(TravelBackend):
    """The example's backend (same flights, prices and references), each slow step held
    until the test opens its gate: ``found`` (search), ``booked`` (booking), ``hotel``."""

    def __init__(self, gates: Gates) -> None:
        super().__init__(search_latency=0, booking_latency=0, hotel_latency=0)
        self.gates = gates

    async def search_flights(self, origin: str, destination: str, date: str) -> list[Flight]:
        await self.gates.wait("found")
        return await super().search_flights(origin, destination, date)

    async def book(self, flight: Flight) -> Booking:
        await self.gates.wait("booked")
        return await super().book(flight)

    async def reserve_hotel(self, city: str, nights: int) -> HotelReservation:
        await self.gates.wait("hotel")
        return await super().reserve_hotel(city, nights)


@dataclass
class AgentRun:
    """The agent on its realtime session, the local server, and what the user heard.

    Attributes:
        model: The realtime model the agent runs on.
        server: The local server (``LocalOpenAIServer``, or ``LocalXaiServer`` for xAI).
        session: The agent's session.
        gates: The gates of the backend's slow steps.
        backend: The example's backend the agent's tools use.
        log: What was said, by whom, in order.
        sockets: Every address a socket of the test connected to.
    """

    model: Model
    server: Any
    session: AgentSession[Any]
    gates: Gates
    backend: GatedBackend
    log: ConversationLog
    sockets: list[Any]

    @property
    def endpoint(self) -> Any:
        """The server's endpoint for the model, with its scripted user."""
        return self.server.gemini if self.model == "gemini" else self.server.realtime

    async def user_says(self, text: str, *, duration: float = 0.1) -> None:
        """The user says ``text``, as the service's turn detection reports it."""
        await self.endpoint.user_says(text, duration=duration)

    async def heard(self, text: str, *, timeout: float = 5.0) -> None:
        """Wait until the user has heard, in full, an agent line starting with ``text``."""
        await self.log.wait_for(
            lambda log: any(line.startswith(text) for line in complete_lines(log)),
            timeout=timeout,
        )

    def call_id(self, name: str, index: int = 0) -> str:
        """The call id the model gave its ``index``-th call of ``name``."""
        turns = self.endpoint.turns if self.model == "gemini" else self.endpoint.responses
        return [cid for turn in turns for cid, n in turn.tool_calls if n == name][index]


@dataclass
class RealtimeRun(AgentRun):
    """A run on the OpenAI realtime protocol (OpenAI's model, or xAI's)."""

    @property
    def realtime(self) -> RealtimeServer:
        """The realtime websocket endpoint (``XaiRealtimeServer`` for xAI)."""
        realtime: RealtimeServer = self.server.realtime
        return realtime

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

    async def progress_partly_said(self) -> None:
        """Wait until the first results reply has said a quarter of the flight's progress
        (with audio generated in real time, about as much has been played)."""
        await eventually(
            lambda: (
                bool(results := self.results_requests()) and len(results[0].text) >= len(FOUND) // 4
            )
        )


@dataclass
class GeminiRun(AgentRun):
    """A run on the Gemini Live API."""

    @property
    def live(self) -> GeminiLiveServer:
        """The Live API endpoint."""
        live: GeminiLiveServer = self.server.gemini
        return live

    def responses_sent(self) -> list[str]:
        """Ids of the function responses the client sent, in order."""
        return [
            r.get("id") for m in self.live.received("toolResponse") for r in m["functionResponses"]
        ]

    def results_turns(self) -> list[Turn]:
        """The model turns asked for to speak background results, in order."""
        return [
            t
            for t in self.live.turns
            if t.messages
            and t.messages[-1]["role"] == "system"
            and RESULTS_MARKER in t.messages[-1]["content"]
        ]


@asynccontextmanager
async def agent_on_local_server(
    model: Model,
    sockets: list[Any],
    *,
    seconds_per_char: float = 0.004,
    pace: float = 2.0,
    booking_filler: bool = False,
    connections: int = 1,
    tool_behavior: Any = None,
    agent: Callable[[Gates], Agent] | None = None,
) -> AsyncIterator[Any]:
    """The example agent on ``model``, against a fresh local server.

    Yields a :class:`RealtimeRun` (``realtime``, ``xai``) or a :class:`GeminiRun`
    (``gemini``). While the test runs, the session may see only errors it recovers from,
    and must stay open; once it is closed, the model's protocol checks must hold.

    Args:
        model: The realtime model.
        sockets: The ``sockets`` fixture: every address a socket of the test connects to.
        seconds_per_char: How long the model's audio lasts, per character said.
        pace: How many times faster than real time the server generates audio (1.0: a
            reply is still being generated while it plays).
        booking_filler: Whether the agent says its filler while a booking runs long.
        connections: How many times the client is to connect (a reconnection after a
            dropped connection is one more).
        tool_behavior: Gemini only: the model's ``tool_behavior`` (``NON_BLOCKING``...);
            None keeps the plugin's default.
        agent: Makes the agent from the gates, instead of the example's agent.
    """
    scenario = flight_scenario(seconds_per_char=seconds_per_char)
    # the user interrupts with a remark the model answers in words
    scenario.rules.append(
        Rule(
            "answer a remark",
            lambda m: m[-1].get("role") == "user" and m[-1].get("content") == HOLD_ON,
            Answer(text=TAKE_YOUR_TIME),
        )
    )
    gates = Gates()
    backend = GatedBackend(gates)
    server_class = LocalXaiServer if model == "xai" else LocalOpenAIServer
    run_class = GeminiRun if model == "gemini" else RealtimeRun
    with pytest.MonkeyPatch.context() as env:
        async with server_class(scenario) as server:
            session = _session(model, server, env, tool_behavior=tool_behavior)
            session.output.audio = RealTimeSpeaker()
            run = run_class(
                model, server, session, gates, backend, ConversationLog(session), sockets
            )
            run.endpoint.pace = pace
            errors: list[Any] = []
            closed: list[Any] = []
            session.on("error", errors.append)
            session.on("close", closed.append)
            # the payment question is the demo's story, not these tests': they follow each
            # delivery step by step
            await session.start(
                agent(gates)
                if agent is not None
                else FlightAgent(
                    backend=backend, confirm_payment=False, booking_filler=booking_filler
                )
            )
            try:
                yield run
                # every error the session saw was one it recovered from, and it was still
                # open when the test closed it
                assert [e for e in errors if not getattr(e.error, "recoverable", True)] == []
                assert closed == []
            finally:
                await session.aclose()
                await session.llm.aclose()  # the model's own HTTP session, outside a job
    assert_protocol_held(run, connections)


def _session(
    model: Model, server: Any, env: pytest.MonkeyPatch, *, tool_behavior: Any
) -> AgentSession[Any]:
    """The agent's session on ``model``, its client pointed at ``server``."""
    if model != "gemini":
        return build_session(mode=model, base_url=server.base_url, api_key="offline")
    # google-genai reads SSL_CERT_FILE when its client is made, at session start
    env.setenv("SSL_CERT_FILE", server.certificate.ca_file)
    if tool_behavior is None:
        return build_session(mode="gemini", base_url=server.gemini_base_url, api_key="offline")
    from google.genai import types

    from livekit.plugins import google

    return AgentSession(
        llm=google.realtime.RealtimeModel(
            http_options=types.HttpOptions(base_url=server.gemini_base_url),
            api_key="offline",
            tool_behavior=tool_behavior,
        )
    )
