"""The live room demo: the flight agent in a real LiveKit room, and its web page.

Everything runs on this machine, on loopback: livekit-server (built and cached as for the
room tests), the local OpenAI-protocol server, the example's worker (``agent.py dev``,
pipeline mode) and the page's server. Open the address it prints, press Join, and type
the lines it suggests: the local speech-to-text only knows the scripted voice, so type
rather than speak (a typed line reaches the agent as chat, ``lk.chat``, like a
transcribed turn). The background tasks appear as cards; Cancel stops one. Ctrl-C stops
everything::

    python3 -m uv tool run --from 'nox>=2025.2.9' nox -s room_demo
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "examples" / "flight_booking" / "web"
OFFLINE = ROOT / "examples" / "flight_booking" / "offline"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(OFFLINE) not in sys.path:
    sys.path.insert(0, str(OFFLINE))

from openai_server import LocalOpenAIServer  # noqa: E402
from scenario import flight_scenario  # noqa: E402

from tests.room.livekit_server import LiveKitServer, ensure_binary, start_server  # noqa: E402
from tests.room.worker import WorkerProcess  # noqa: E402

ROOM = "flight-demo"
LINES_TO_TYPE = [
    "Book a flight from Paris to Tokyo on December 3rd.",
    "Yes, pay it.",
    "Also reserve a hotel for 4 nights.",
    "What is running?",
]
# a person reads and types: the backend takes its realistic time, and the hotel search
# runs long enough to be cancelled from the page
BACKEND = {
    "FLIGHT_SEARCH_LATENCY": "3",
    "FLIGHT_BOOKING_LATENCY": "4",
    "HOTEL_LATENCY": "45",
}


@contextlib.asynccontextmanager
async def page_server(server: LiveKitServer, *, port: int = 0) -> AsyncIterator[str]:
    """The page's own dev server (``web/serve.py``'s app) on loopback; its URL."""
    from aiohttp import web

    spec = importlib.util.spec_from_file_location("flight_web_serve", WEB / "serve.py")
    assert spec is not None and spec.loader is not None
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    app = serve.make_app(
        url=server.url, api_key=server.api_key, api_secret=server.api_secret, default_room=ROOM
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def room_demo(server: LiveKitServer, *, port: int = 0) -> AsyncIterator[str]:
    """The model server, the worker and the page around ``server``; yields the page URL."""
    async with (
        LocalOpenAIServer(flight_scenario()) as model,
        WorkerProcess(
            livekit_url=server.url,
            api_key=server.api_key,
            api_secret=server.api_secret,
            openai_base_url=model.base_url,
            mode="pipeline",
            command="dev",
            env=BACKEND,
        ),
        page_server(server, port=port) as url,
    ):
        yield url


async def main(port: int) -> None:
    ensure_binary()
    server = start_server()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with room_demo(server, port=port) as url:
            print(f"\nOpen {url}/ and press Join. Type, one at a time:", flush=True)
            for line in LINES_TO_TYPE:
                print(f"  {line}")
            print("then press Cancel on the hotel's card. Ctrl-C stops the demo.\n", flush=True)
            await stop.wait()
    finally:
        server.stop()


def _args(argv: list[str]) -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="the page's port (0: a free one)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(_args(sys.argv[1:]).port))
