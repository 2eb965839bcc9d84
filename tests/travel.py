"""A small travel agent whose background tools the tests drive step by step.

Each tool waits on named gates, so a test decides exactly when an update or a result
happens; no test sleeps to make something happen.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from livekit.agents import Agent, function_tool
from livekit.plugins.asynctools import AsyncRunContext, AsyncToolset, DuplicateMode
from livekit.plugins.asynctools.testing import LLMRequest, Reply, ToolCall

RESULTS_MARKER = "New results arrived"


class Gates:
    """Named events a tool waits on; ``open(name)`` lets it go on."""

    def __init__(self) -> None:
        self._events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def wait(self, name: str) -> None:
        await self._events[name].wait()

    def open(self, *names: str) -> None:
        for name in names:
            self._events[name].set()


class Flights(AsyncToolset):
    """Flight booking: an update now, one after ``found``, the result after ``booked``."""

    def __init__(self, gates: Gates, *, on_duplicate_call: DuplicateMode = "confirm") -> None:
        super().__init__(id="flights", on_duplicate_call=on_duplicate_call)
        self.gates = gates
        self.finished: list[str] = []

    @function_tool
    async def book_flight(self, ctx: AsyncRunContext, destination: str) -> dict[str, Any] | None:
        """Search and book a flight to the destination."""
        await ctx.update(f"Searching flights to {destination}")
        await self.gates.wait("found")
        await ctx.update("Found 3 flights, booking the cheapest")
        await self.gates.wait("booked")
        self.finished.append(destination)
        if destination == "Nowhere":
            return None
        return {"booking_reference": f"FL-{destination.upper()}"}


class Hotels(AsyncToolset):
    """Hotel reservation: an update now, the result after ``hotel``."""

    def __init__(self, gates: Gates) -> None:
        super().__init__(id="hotels")
        self.gates = gates

    @function_tool
    async def reserve_hotel(self, ctx: AsyncRunContext, city: str) -> str:
        """Reserve a hotel in the city."""
        await ctx.update(f"Looking for hotels in {city}")
        await self.gates.wait("hotel")
        return f"Hotel reserved in {city}: HT-{city.upper()}"


class TravelAgent(Agent):
    """An agent with the two toolsets and a plain tool the model may call after a result."""

    def __init__(self, *, tools: list[Any], instructions: str = "You book travel.") -> None:
        super().__init__(instructions=instructions, tools=tools)
        self.emails: list[str] = []

    @function_tool
    async def send_confirmation_email(self, booking_reference: str) -> str:
        """Email the booking confirmation to the user."""
        self.emails.append(booking_reference)
        return "sent"


def weather_tool(gates: Gates) -> tuple[Any, asyncio.Event]:
    """A plain tool the model may call in any reply: it runs until ``weather`` opens. Also
    returns the event set once it runs."""
    running = asyncio.Event()

    @function_tool
    async def check_weather(city: str) -> str:
        """The weather in the city."""
        running.set()
        await gates.wait("weather")
        return f"Sunny in {city}"

    return check_weather, running


def respond_to(user_turns: dict[str, Reply]) -> Any:
    """A responder: scripted answers to user messages, acknowledgements otherwise.

    A user message listed in ``user_turns`` gets its reply; a deferred results reply
    says which call ids it covers; a tool output is acknowledged with its call id.
    """

    def respond(req: LLMRequest) -> Reply | None:
        last = req.last_item
        if last.type == "message" and last.role == "user":
            return user_turns.get(last.text_content or "", Reply(text="Sure."))
        if last.type == "message" and req.mentions(RESULTS_MARKER):
            return Reply(text="Update: " + ", ".join(new_results(req)))
        if last.type == "function_call_output":
            return Reply(text=f"ack {last.call_id}")
        return None

    return respond


def new_results(req: LLMRequest) -> list[str]:
    """The call ids a deferred-reply request asks the model to talk about."""
    texts = req.texts("system") + req.texts("developer")
    instructions = next(t for t in reversed(texts) if RESULTS_MARKER in t)
    return [o for o in req.output_ids() if f"'{o}'" in instructions]


def results_requests(requests: list[LLMRequest]) -> list[LLMRequest]:
    """The requests that asked the model to speak background results."""
    return [r for r in requests if r.mentions(RESULTS_MARKER)]


def call(name: str, call_id: str, /, **arguments: Any) -> Reply:
    """A reply that makes one tool call."""
    return Reply(tool_calls=[ToolCall(name, arguments, call_id=call_id)])


def output_of(req: LLMRequest, call_id: str) -> str:
    """The output the model was sent for ``call_id``."""
    return next(o.output for o in req.outputs() if o.call_id == call_id)


def core_accepts_one_tool_listed_twice() -> bool:
    """Whether this livekit-agents lets one tool object appear twice (not 1.5.2)."""
    from livekit.agents import llm
    from livekit.plugins.asynctools import get_running_tasks

    try:
        llm.ToolContext([get_running_tasks, get_running_tasks])
    except ValueError:
        return False
    return True
