"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


@pytest.fixture
async def sockets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket of this test connects to."""
    loop = asyncio.get_running_loop()
    addresses: list[Any] = []
    sock_connect = loop.sock_connect
    create_connection = loop.create_connection

    async def recording_sock_connect(sock: Any, address: Any) -> None:
        addresses.append(address)
        await sock_connect(sock, address)

    async def recording_create_connection(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("host") or (len(args) > 1 and args[1]):
            addresses.append((kwargs.get("host") or args[1], kwargs.get("port")))
        return await create_connection(*args, **kwargs)

    monkeypatch.setattr(loop, "sock_connect", recording_sock_connect)
    monkeypatch.setattr(loop, "create_connection", recording_create_connection)
    return addresses
