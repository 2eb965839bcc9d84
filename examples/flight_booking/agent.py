"""Flight-booking voice agent: long tools run in the background while the conversation goes on.

Run it (see README.md):

    python agent.py dev        # against your LiveKit server, join the room to talk
    python agent.py start      # the same, as in production
    python agent.py console    # in the terminal, with your microphone

``LIVEKIT_URL``, ``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET`` name the LiveKit server;
``OPENAI_BASE_URL`` (and ``OPENAI_API_KEY``) the OpenAI endpoint. ``AGENT_MODE`` chooses
the model: ``realtime`` (OpenAI realtime, default), ``pipeline`` (OpenAI STT, LLM and TTS
with Silero VAD), ``gemini`` (the Gemini Live API, with ``GOOGLE_API_KEY``;
``GEMINI_BASE_URL`` points it at another endpoint) or ``xai`` (xAI's realtime API, with
``XAI_API_KEY``; ``XAI_BASE_URL`` points it at another endpoint). The backend's latencies come from
``FLIGHT_SEARCH_LATENCY``, ``FLIGHT_BOOKING_LATENCY``, ``HOTEL_LATENCY`` and
``BACKEND_SPEED`` (see flights.py). ``AGENT_HTTP_HOST`` and ``AGENT_HTTP_PORT`` move the
worker's health-check server (default: every interface, port 8081 with ``start``);
with ``AGENT_MAX_JOBS`` the worker counts its load in jobs, full at that many, instead of
by the machine's CPU (which the LiveKit server also reads: above 0.7 it sends no job).

In a room, the background tasks are published for the front end (``publish_tasks``):
each call's start, updates and end on the ``lk.asynctools.tasks`` text stream, and the
RPC methods ``asynctools.list_tasks`` and ``asynctools.cancel_task``. Of what the tools
receive and return, only a booked flight's reference is shown.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobProcess,
    RunContext,
    cli,
    function_tool,
)
from livekit.plugins import openai
from livekit.plugins.asynctools import (
    AsyncRunContext,
    AsyncToolset,
    Filler,
    publish_tasks,
    tool_policy,
)

sys.path.insert(0, str(Path(__file__).parent))
from flights import TravelBackend  # noqa: E402

Mode = Literal["realtime", "pipeline", "gemini", "xai"]
MODES = ("realtime", "pipeline", "gemini", "xai")

INSTRUCTIONS = """You are a friendly travel agent on a voice call. Keep answers short.
- Flight and hotel bookings take a while: they run in the background. When you start one,
  tell the user it is under way and keep talking with them; progress and results reach
  you as tool outputs, tell the user about them.
- Once a flight is booked, call send_confirmation_email with its booking reference.
- If the user asks what is running, call get_running_tasks; to stop one, cancel_task.
- When you are asked to ask the user something, ask exactly that, briefly.
- If a tool answers that the same booking is already running, ask the user whether they
  really want a second one; only if they say yes, call it again with confirm_duplicate
  set to true."""


class TravelTools(AsyncToolset):
    """The background tools: flight search-and-book and hotel reservation.

    The flight reports structured progress, keeps the locked fare for the model alone (a
    silent update), asks the user before paying (holding the floor, so no other result
    interrupts the question), and says a filler line if the booking runs long in
    silence. The hotel reservation gives up after 60 s, and the model is told it timed
    out.

    Args:
        backend: The travel backend.
        confirm_payment: Ask the user before paying for a flight.
        booking_filler: Say a filler line when a booking runs long in silence.
    """

    def __init__(
        self, backend: TravelBackend, *, confirm_payment: bool = True, booking_filler: bool = True
    ) -> None:
        super().__init__(id="travel", on_duplicate_call="confirm")
        self._backend = backend
        self._confirm_payment = confirm_payment
        # once a quarter of the usual booking time passed in silence (at least 1 s), once
        self._booking_filler = (
            Filler(
                after=max(backend.booking_seconds / 4, 1.0),
                lines=["Still booking your flight, one moment."],
                max_count=1,
            )
            if booking_filler
            else None
        )

    @function_tool
    async def search_and_book_flight(
        self, ctx: AsyncRunContext, origin: str, destination: str, date: str
    ) -> dict[str, Any] | str:
        """Search flights and book the cheapest one, once the user agrees to pay.

        Args:
            origin: City the user flies from.
            destination: City the user flies to.
            date: Travel date, as the user said it (e.g. "2026-12-03").
        """
        await ctx.update(
            f"Searching flights from {origin} to {destination} on {date}.",
            progress=0.0,
            stage="search",
        )
        flights = await self._backend.search_flights(origin, destination, date)
        best = flights[0]
        await ctx.update(
            f"Found {len(flights)} flights. The cheapest is {best.number} at {best.departs} "
            f"for {best.price_eur} euros.",
            progress=0.5,
            stage="payment",
        )
        # for the model only: it may use the fare later, the user needs no extra sentence
        await ctx.update(f"Fare of {best.price_eur} euros locked.", delivery="silent")
        if self._confirm_payment:
            async with ctx.foreground():
                answer = await ctx.ask(f"Shall I pay {best.price_eur} euros for {best.number}?")
            if not is_yes(answer):
                return f"The user did not agree to pay {best.price_eur} euros: nothing was booked."
        async with ctx.with_filler(self._booking_filler):
            booking = await self._backend.book(best)
        return {
            "booking_reference": booking.reference,
            "flight": best.number,
            "departs": f"{best.date} {best.departs}",
            "price_eur": best.price_eur,
        }

    @tool_policy(timeout=60)
    @function_tool
    async def reserve_hotel(self, ctx: AsyncRunContext, city: str, nights: int) -> dict[str, Any]:
        """Reserve a hotel.

        Args:
            city: City of the hotel.
            nights: Number of nights.
        """
        await ctx.update(f"Looking for a hotel in {city} for {nights} nights.")
        reservation = await self._backend.reserve_hotel(city, nights)
        return {
            "reservation_reference": reservation.reference,
            "hotel": reservation.hotel,
            "price_eur": reservation.price_eur,
        }


def is_yes(answer: str) -> bool:
    """Whether the user's answer agrees."""
    words = answer.lower().replace(",", " ").replace(".", " ").replace("!", " ").split()
    return any(w in ("yes", "yeah", "sure", "ok", "okay", "go") for w in words)


class FlightAgent(Agent):
    """The travel agent: background travel tools and an email tool.

    Args:
        backend: The travel backend.
        confirm_payment: Ask the user before paying for a flight.
        booking_filler: Say a filler line when a booking runs long in silence.
    """

    def __init__(
        self, *, backend: TravelBackend, confirm_payment: bool = True, booking_filler: bool = True
    ) -> None:
        tools = TravelTools(backend, confirm_payment=confirm_payment, booking_filler=booking_filler)
        super().__init__(instructions=INSTRUCTIONS, tools=[tools])
        self._backend = backend

    @function_tool
    async def send_confirmation_email(self, ctx: RunContext, booking_reference: str) -> str:
        """Email the booking confirmation to the user.

        Args:
            booking_reference: The reference of the booking to confirm.
        """
        return await self._backend.send_confirmation_email(booking_reference)


def build_session(
    *,
    mode: Mode,
    base_url: str | None = None,
    api_key: str | None = None,
    vad: Any = None,
) -> AgentSession[Any]:
    """The agent's session, on a realtime model or the STT-LLM-TTS pipeline.

    Args:
        mode: ``realtime``, ``pipeline``, ``gemini`` or ``xai``.
        base_url: The endpoint: OpenAI-compatible (default: OpenAI, or ``OPENAI_BASE_URL``),
            for ``gemini`` the Live API's (default: Google, or ``GEMINI_BASE_URL``), for
            ``xai`` the realtime websocket's (default: xAI's, or ``XAI_BASE_URL``).
        api_key: API key (default: ``OPENAI_API_KEY``, or ``GOOGLE_API_KEY`` for ``gemini``,
            ``XAI_API_KEY`` for ``xai``).
        vad: The VAD of the pipeline (default: Silero).
    """
    if mode == "gemini":
        return AgentSession(llm=_gemini(base_url=base_url, api_key=api_key))
    if mode == "xai":
        return AgentSession(llm=_xai(base_url=base_url, api_key=api_key))
    endpoint: dict[str, Any] = {}
    if base_url or os.environ.get("OPENAI_BASE_URL"):
        endpoint["base_url"] = base_url or os.environ["OPENAI_BASE_URL"]
    if api_key:
        endpoint["api_key"] = api_key
    if mode == "realtime":
        return AgentSession(llm=openai.realtime.RealtimeModel(**endpoint))
    if mode == "pipeline":
        if vad is None:
            from livekit.plugins import silero

            vad = silero.VAD.load()
        return AgentSession(
            vad=vad,
            stt=openai.STT(**endpoint),
            llm=openai.LLM(**endpoint),
            tts=openai.TTS(response_format="pcm", **endpoint),
        )
    raise ValueError(f"AGENT_MODE must be one of {', '.join(MODES)}, got {mode!r}")


def _gemini(*, base_url: str | None, api_key: str | None) -> Any:
    """The Gemini Live realtime model, on ``base_url`` when one is given."""
    from google.genai import types

    from livekit.plugins import google

    options: dict[str, Any] = {}
    if base_url := base_url or os.environ.get("GEMINI_BASE_URL"):
        # google-genai connects to <base_url>/ws/...BidiGenerateContent, always over TLS
        options["http_options"] = types.HttpOptions(base_url=base_url)
    if api_key:
        options["api_key"] = api_key
    return google.realtime.RealtimeModel(**options)


def _xai(*, base_url: str | None, api_key: str | None) -> Any:
    """xAI's realtime model, on ``base_url`` (a ``wss://.../v1/realtime`` URL) when given."""
    from livekit.plugins import xai

    options: dict[str, Any] = {}
    if base_url := base_url or os.environ.get("XAI_BASE_URL"):
        options["base_url"] = base_url
    if api_key:
        options["api_key"] = api_key
    return xai.realtime.RealtimeModel(**options)


def selected_mode() -> Mode:
    """The mode chosen by ``AGENT_MODE`` (default ``realtime``)."""
    mode = os.environ.get("AGENT_MODE", "realtime")
    if mode not in MODES:
        raise SystemExit(f"AGENT_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


def published_booking_reference(
    function_name: str, field: Literal["arguments", "result"], value: Any
) -> Any | None:
    """What the room may see of a call: the flight's booking reference, nothing else.

    The redaction hook of ``publish_tasks``: a front end shows the reference on the
    flight's card; the route, the date, the hotel and every argument stay in the worker.
    ``value`` is what the tool returned (or its text, which is parsed).
    """
    if function_name != "search_and_book_flight" or field != "result":
        return None
    result = _parsed(value) if isinstance(value, (str, bytes)) else value
    if isinstance(result, dict) and isinstance(result.get("booking_reference"), str):
        return {"booking_reference": result["booking_reference"]}
    return None  # declined, failed or cancelled: nothing to show


def _parsed(text: str | bytes) -> Any:
    """A tool's result from its text: JSON, or the repr of a Python literal."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text if isinstance(text, str) else text.decode())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _server_options() -> dict[str, Any]:
    """The worker's options the environment sets: where its health-check HTTP server
    listens, and how its load is counted."""
    options: dict[str, Any] = {}
    if host := os.environ.get("AGENT_HTTP_HOST"):
        options["host"] = host
    if port := os.environ.get("AGENT_HTTP_PORT"):
        options["port"] = int(port)
    if max_jobs := os.environ.get("AGENT_MAX_JOBS"):
        # in jobs rather than the machine's CPU, which other programs share
        limit = int(max_jobs)
        options["load_fnc"] = lambda worker: len(worker.active_jobs) / limit
        options["load_threshold"] = 1.0
    return options


server = AgentServer(**_server_options())


def prewarm(proc: JobProcess) -> None:
    """Load the pipeline's VAD once per process, before a job arrives."""
    if selected_mode() == "pipeline":
        from livekit.plugins import silero

        proc.userdata["vad"] = silero.VAD.load()


server.setup_fnc = prewarm


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    """Join the room and talk; the room sees the background tasks (the booking reference
    of a flight, nothing else) and may list and cancel them."""
    session = build_session(mode=selected_mode(), vad=ctx.proc.userdata.get("vad"))
    await session.start(FlightAgent(backend=TravelBackend.from_env()), room=ctx.room)
    if not ctx.is_fake_job():  # console mode has no room to publish to
        publish_tasks(session, ctx.room, redact=published_booking_reference)


LIVEKIT_VARIABLES = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")


def missing_credentials(argv: list[str]) -> list[str]:
    """The LiveKit variables a server command needs and the environment lacks."""
    needs_server = any(cmd in argv for cmd in ("dev", "start", "connect"))
    return [v for v in LIVEKIT_VARIABLES if needs_server and not os.environ.get(v)]


if __name__ == "__main__":
    try:
        from dotenv import load_dotenv

        load_dotenv(Path(__file__).parent / ".env")
    except ImportError:
        pass
    if missing := missing_credentials(sys.argv[1:]):
        sys.exit(
            "Set " + ", ".join(missing) + " (your LiveKit server; see .env.example) "
            "before running the agent against LiveKit. `console` runs without them."
        )
    cli.run_app(server)
