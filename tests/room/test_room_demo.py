"""The live room demo (``nox -s room_demo``) works as its instructions say.

The demo's own pieces (the model server, ``agent.py dev`` and the page's server) around
the test's livekit-server; a person at the page, here Chromium through Playwright, joins
and types the lines the demo suggests: the flight is booked once they agree to pay, and
its card ends done with the booking reference. The page logs no error.
"""

from __future__ import annotations

import re
import secrets
import wave
from pathlib import Path
from typing import Any

from .livekit_server import LiveKitServer
from .room_demo import LINES_TO_TYPE, room_demo
from .test_browser import CHROMIUM, Console, card, chromium, pytestmark, transcript

__all__ = ["pytestmark"]  # the browser's skips (no Chromium, no npm packages) apply here


def silence(path: Path, seconds: float = 60.0) -> Path:
    """A silent microphone: the person types instead (Chromium's default fake device beeps)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(b"\0\0" * int(48000 * seconds))
    return path


def agent_says(words: str) -> str:
    return f"#transcript .line.agent:has-text('{words}')"


async def type_line(page: Any, text: str) -> None:
    await page.fill("#say-text", text)
    await page.press("#say-text", "Enter")


async def test_a_person_types_to_the_agent_and_sees_the_flight_booked(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    """Typed lines reach the agent as turns; the flight's card ends with its reference."""
    assert CHROMIUM.is_file()
    book, yes = LINES_TO_TYPE[0], LINES_TO_TYPE[1]
    async with (
        room_demo(livekit_server) as url,
        chromium(silence(tmp_path / "silence.wav")) as browser,
    ):
        page = await browser.new_page()
        console = Console(page)
        await page.goto(f"{url}/?room=demo-{secrets.token_hex(4)}&identity=person")
        await page.click("#join")
        await page.wait_for_selector("#agent-state:has-text('listening')", timeout=30_000)
        await type_line(page, book)
        await page.wait_for_selector(card("search_and_book_flight"), timeout=15_000)
        await page.wait_for_selector(agent_says("Shall I pay"), timeout=20_000)
        await type_line(page, yes)
        done = await page.wait_for_selector(card("search_and_book_flight", "done"), timeout=30_000)
        result = await done.eval_on_selector(".result", "e => e.textContent")
        (reference,) = re.findall(r"FL-\d+", result)
        # the agent says the reference the card shows
        await page.wait_for_selector(agent_says(reference), timeout=15_000)
        lines = await transcript(page)

    assert ("user", book) in lines and ("user", yes) in lines
    assert console.errors == []
