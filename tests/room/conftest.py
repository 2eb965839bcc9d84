"""Fixtures of the room tests: a real livekit-server, and proof nothing left loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .livekit_server import LiveKitServer, ensure_binary, start_server
from .loopback import LoopbackWatcher

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[LiveKitServer]:
    """One livekit-server for the whole run, on free loopback ports.

    Its log is kept in ``tests/room/artifacts/livekit-server.log``. The first run builds the
    binary (about two minutes); ``nox -s room`` does that before pytest starts.
    """
    log_path = ARTIFACTS / "livekit-server.log"
    log_path.unlink(missing_ok=True)
    server = start_server(binary=ensure_binary(), log_path=log_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def loopback_only(request: pytest.FixtureRequest) -> Iterator[LoopbackWatcher]:
    """Fail a room test whose processes open a socket that leaves this machine.

    Watches the test process, everything it started and the server; a test that used the
    server must also have been seen talking to it, or the watcher proved nothing.
    """
    # the rtc SDK and Chromium bind the host's interface address for ICE whatever they are
    # offered (libwebrtc ignores loopback interfaces); see loopback.py
    watcher = LoopbackWatcher(allow_host_addresses=True)
    server: LiveKitServer | None = None
    if "livekit_server" in request.fixturenames:
        server = request.getfixturevalue("livekit_server")
        watcher.watch(server.process.pid)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()
    watcher.check()
    if server is not None:
        assert watcher.loopback_connections > 0, (
            f"the loopback watcher saw no connection in {watcher.samples} samples"
        )
