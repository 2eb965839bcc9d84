"""Development server for the flight agent's web page: its files and a token endpoint.

For development only. ``/token`` hands a token to join the room to whoever asks, with
the identity they choose: it binds 127.0.0.1 and must never be exposed. A real front
end gets its tokens from its own backend, after signing the user in.

It serves:

- ``/``, ``/app.js``, ``/style.css``: the page;
- ``/vendor/livekit-client.esm.mjs``: livekit-client's self-contained ES module, from
  ``node_modules`` (``npm ci`` installs it, pinned by ``package-lock.json``); the page's
  import map points ``livekit-client`` at it, so no bundler is needed;
- ``/token?room=...&identity=...``: ``{"url": ..., "token": ...}``, a token to join
  ``room`` (default ``flight-booking``) as ``identity`` (default: a random one), minted
  with LIVEKIT_API_KEY and LIVEKIT_API_SECRET, for the server at LIVEKIT_URL.

Run it (see README.md)::

    npm ci
    python serve.py              # http://127.0.0.1:8080
    python serve.py --port 0     # on a free port
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
from pathlib import Path

from aiohttp import web

from livekit import api

HERE = Path(__file__).resolve().parent
CLIENT_MODULE = HERE / "node_modules" / "livekit-client" / "dist" / "livekit-client.esm.mjs"
DEFAULT_ROOM = "flight-booking"
LIVEKIT_VARIABLES = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")

_PAGE_FILES = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
# room names and identities a user can type: no spaces, slashes or control characters
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def make_app(
    *, url: str, api_key: str, api_secret: str, default_room: str = DEFAULT_ROOM
) -> web.Application:
    """The page's web application.

    Args:
        url: The LiveKit server's URL, as the browser reaches it (``ws://...``).
        api_key: The server's API key.
        api_secret: The server's API secret.
        default_room: The room ``/token`` joins when the query names none.

    Raises:
        FileNotFoundError: livekit-client is not installed (run ``npm ci`` here).
    """
    if not CLIENT_MODULE.is_file():
        raise FileNotFoundError(f"{CLIENT_MODULE} is missing: run `npm ci` in {HERE}")

    def static(name: str, content_type: str) -> web.StreamResponse:
        return web.FileResponse(
            HERE / name, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    async def page_file(request: web.Request) -> web.StreamResponse:
        return static(*_PAGE_FILES[request.path])

    async def client_module(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(CLIENT_MODULE, headers={"Content-Type": "text/javascript"})

    async def token(request: web.Request) -> web.Response:
        room = request.query.get("room") or default_room
        identity = request.query.get("identity") or f"user-{secrets.token_hex(4)}"
        for what, value in (("room", room), ("identity", identity)):
            if not _NAME.fullmatch(value):
                raise web.HTTPBadRequest(
                    text=f"{what} must be 1 to 64 letters, digits or any of _.@-"
                )
        jwt = (
            api.AccessToken(api_key, api_secret)
            .with_identity(identity)
            .with_name(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room))
            .to_jwt()
        )
        return web.json_response({"url": url, "token": jwt}, headers={"Cache-Control": "no-store"})

    app = web.Application()
    for path in _PAGE_FILES:
        app.router.add_get(path, page_file)
    app.router.add_get("/vendor/livekit-client.esm.mjs", client_module)
    app.router.add_get("/token", token)
    return app


async def serve(app: web.Application, *, port: int) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` (0: a free port) until cancelled."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        port = runner.addresses[0][1]
        print(f"Open http://127.0.0.1:{port}/ (Ctrl+C stops)", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="port (0: a free one)")
    parser.add_argument("--room", default=DEFAULT_ROOM, help="room joined by default")
    args = parser.parse_args()
    try:
        from dotenv import load_dotenv

        load_dotenv(HERE.parent / ".env")  # the agent's .env: the same LiveKit server
    except ImportError:
        pass
    if missing := [v for v in LIVEKIT_VARIABLES if not os.environ.get(v)]:
        sys.exit("Set " + ", ".join(missing) + " (your LiveKit server; see ../.env.example).")
    try:
        app = make_app(
            url=os.environ["LIVEKIT_URL"],
            api_key=os.environ["LIVEKIT_API_KEY"],
            api_secret=os.environ["LIVEKIT_API_SECRET"],
            default_room=args.room,
        )
    except FileNotFoundError as e:
        sys.exit(str(e))
    try:
        asyncio.run(serve(app, port=args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
