"""The real livekit-server of the room tests: clients meet on it, and it stops cleanly."""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.request

import psutil
import pytest

from livekit import api, rtc

from .livekit_server import LiveKitServer, start_server
from .loopback import ice_remote_addresses

TOPIC = "asynctools.smoke"


async def test_text_stream_between_two_clients(livekit_server: LiveKitServer) -> None:
    """A text stream one rtc client publishes reaches the other, through the real server."""
    room_name = f"smoke-{secrets.token_hex(4)}"
    receiver, sender = rtc.Room(), rtc.Room()
    received: asyncio.Future[tuple[str, str, str]] = asyncio.get_running_loop().create_future()
    readers: list[asyncio.Task[None]] = []

    async def read(reader: rtc.TextStreamReader, identity: str) -> None:
        text = await reader.read_all()
        if not received.done():
            received.set_result((identity, reader.info.topic, text))

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        readers.append(asyncio.create_task(read(reader, identity)))

    receiver.register_text_stream_handler(TOPIC, on_text)
    try:
        await receiver.connect(
            livekit_server.url, livekit_server.token(identity="receiver", room=room_name)
        )
        await sender.connect(
            livekit_server.url, livekit_server.token(identity="sender", room=room_name)
        )
        async with api.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        ) as lkapi:
            listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
        assert sorted(p.identity for p in listed.participants) == ["receiver", "sender"]

        await sender.local_participant.send_text("flight LH 123 is booked", topic=TOPIC)

        assert await asyncio.wait_for(received, timeout=10) == (
            "sender",
            TOPIC,
            "flight LH 123 is booked",
        )
        # where the clients' unconnected UDP sockets may send: the server's candidates only
        for room in (sender, receiver):
            assert await ice_remote_addresses(room) == {"127.0.0.1"}
    finally:
        await sender.disconnect()
        await receiver.disconnect()
        await asyncio.gather(*readers)


def test_stop_leaves_no_process_behind() -> None:
    """A stopped server's process is gone, and its port no longer answers."""
    server = start_server()
    pid = server.process.pid
    with urllib.request.urlopen(server.http_url + "/", timeout=5) as response:
        assert response.read().strip() == b"OK"
    assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

    server.stop()

    assert server.process.returncode is not None
    assert not psutil.pid_exists(pid)
    assert not [p for p in psutil.Process().children(recursive=True) if p.pid == pid]
    with pytest.raises(OSError):
        urllib.request.urlopen(server.http_url + "/", timeout=5)


# the rtc SDK logs the server going away under it (its signal socket closed or reset), and
# its attempts to resume or restart the connection, as errors
@pytest.mark.expected_log_errors(
    "closed unexpectedly",
    "websocket recv error",
    "resuming connection",
    "restarting connection",
    "failed to reconnect",
)
async def test_stop_forces_a_server_a_participant_is_still_in() -> None:
    """A room left connected cannot hang the server's stop: a second SIGTERM forces it.

    The first SIGTERM is given half a second (the server waits for the participant, so it
    does not exit); the second is given as long as the server may need on a loaded
    machine, and it exits cleanly in that time. The client's data channels then close
    under it, which the rtc SDK logs as errors.
    """
    server = start_server()
    room = rtc.Room()
    await room.connect(server.url, server.token(identity="left-behind", room="stop"))
    try:
        started = time.monotonic()
        await asyncio.to_thread(server.stop, grace=0.5, timeout=10.0)
        elapsed = time.monotonic() - started
    finally:
        await room.disconnect()

    assert server.process.returncode == 0  # a clean exit, not the SIGKILL fallback
    assert 0.5 <= elapsed < 10.5
