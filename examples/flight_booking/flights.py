"""A simulated travel backend: realistic latency, deterministic results.

The same inputs always give the same flights, prices and references (they are derived
from a hash of the inputs), so a demo or a test can state exactly what it expects.
Latencies are in seconds, multiplied by ``1 / speed``; the environment variables
``FLIGHT_SEARCH_LATENCY``, ``FLIGHT_BOOKING_LATENCY``, ``HOTEL_LATENCY`` and
``BACKEND_SPEED`` set them for a real run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Flight:
    """One bookable flight."""

    number: str
    origin: str
    destination: str
    date: str
    departs: str
    price_eur: int


@dataclass(frozen=True)
class Booking:
    """A confirmed flight booking."""

    reference: str
    flight: Flight


@dataclass(frozen=True)
class HotelReservation:
    """A confirmed hotel reservation."""

    reference: str
    hotel: str
    city: str
    nights: int
    price_eur: int


def _digest(*parts: object) -> int:
    text = "|".join(str(p).strip().lower() for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class TravelBackend:
    """Flights, hotels and email, with configurable latency.

    Args:
        search_latency: Seconds a flight search takes.
        booking_latency: Seconds a booking takes.
        hotel_latency: Seconds a hotel reservation takes.
        speed: Divides every latency (10 makes the backend ten times faster).
    """

    def __init__(
        self,
        *,
        search_latency: float = 3.0,
        booking_latency: float = 2.0,
        hotel_latency: float = 4.0,
        speed: float = 1.0,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._search = search_latency / speed
        self._booking = booking_latency / speed
        self._hotel = hotel_latency / speed
        self.emails: list[str] = []

    @property
    def booking_seconds(self) -> float:
        """How long a booking takes, in seconds (speed included)."""
        return self._booking

    @classmethod
    def from_env(cls) -> TravelBackend:
        """A backend configured from the environment (defaults: the realistic latencies)."""
        return cls(
            search_latency=float(os.environ.get("FLIGHT_SEARCH_LATENCY", 3.0)),
            booking_latency=float(os.environ.get("FLIGHT_BOOKING_LATENCY", 2.0)),
            hotel_latency=float(os.environ.get("HOTEL_LATENCY", 4.0)),
            speed=float(os.environ.get("BACKEND_SPEED", 1.0)),
        )

    async def search_flights(self, origin: str, destination: str, date: str) -> list[Flight]:
        """Flights between two cities on a date, cheapest first."""
        await asyncio.sleep(self._search)
        seed = _digest(origin, destination, date)
        count = 2 + seed % 4
        flights = []
        for i in range(count):
            h = _digest(seed, i)
            flights.append(
                Flight(
                    number=f"LK{100 + h % 900}",
                    origin=origin,
                    destination=destination,
                    date=date,
                    departs=f"{6 + h % 15:02d}:{(h // 15) % 4 * 15:02d}",
                    price_eur=180 + h % 620,
                )
            )
        return sorted(flights, key=lambda f: f.price_eur)

    async def book(self, flight: Flight) -> Booking:
        """Book ``flight``."""
        await asyncio.sleep(self._booking)
        reference = _digest(flight.number, flight.date, flight.departs) % 1_000_000
        return Booking(reference=f"FL-{reference:06d}", flight=flight)

    async def reserve_hotel(self, city: str, nights: int) -> HotelReservation:
        """Reserve a hotel in ``city``."""
        if nights < 1:
            raise ValueError("nights must be at least 1")
        await asyncio.sleep(self._hotel)
        h = _digest(city, nights)
        hotel = ["Harbour Inn", "Grand Central", "Park Lodge", "Old Town Suites"][h % 4]
        return HotelReservation(
            reference=f"HT-{h % 1_000_000:06d}",
            hotel=hotel,
            city=city,
            nights=nights,
            price_eur=nights * (90 + h % 160),
        )

    async def send_confirmation_email(self, booking_reference: str) -> str:
        """Email the confirmation of a booking."""
        self.emails.append(booking_reference)
        return f"Confirmation for {booking_reference} sent."
