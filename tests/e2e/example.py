"""The worked example, importable by the end-to-end tests, and a backend they gate."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flight_booking"
if str(EXAMPLE) not in sys.path:
    sys.path[:0] = [str(EXAMPLE / "offline"), str(EXAMPLE)]

from flights import Booking, Flight, HotelReservation, TravelBackend  # noqa: E402

from livekit.plugins.asynctools.testing import ConversationLog  # noqa: E402

from ..travel import Gates  # noqa: E402

# what the user says and hears in the flight conversation, on every realtime model
BOOK_FLIGHT = "Book me a flight from Paris to Tokyo on December 3rd."
FLIGHT_ACK = "Sure! Searching flights from Paris to Tokyo on 2026-12-03. I'll keep you posted."
FOUND = "Found 3 flights. The cheapest is LK992 at 13:45 for 192 euros."
BOOKED = "Your flight is booked, reference FL-129894."
EMAILED = "I've emailed you the confirmation."


def complete_lines(log: ConversationLog) -> list[str]:
    """The agent's lines the user heard in full (not cut off), in order."""
    return [line.text for line in log.lines if line.role == "assistant" and not line.interrupted]


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
