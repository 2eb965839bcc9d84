"""The loopback watcher: it sees sockets in this process and its children, and fails on them."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from .loopback import LoopbackWatcher, host_addresses, is_loopback

# TEST-NET-2 (RFC 5737): never routed. Connecting a UDP socket sends no packet, it only
# sets the remote address the kernel reports.
OFF_HOST = ("198.51.100.7", 9)


def _connect_udp(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
    except OSError as e:  # no route at all: nothing to prove on this machine
        sock.close()
        pytest.skip(f"no route to {address[0]}: {e}")
    return sock


def test_a_socket_to_another_machine_fails_the_check(loopback_only: LoopbackWatcher) -> None:
    """A socket of the test process with an off-host remote address fails the test."""
    with _connect_udp(OFF_HOST):
        loopback_only.wait_for_samples()
    loopback_only.wait_for_samples()

    with pytest.raises(AssertionError, match=r"udp .* -> 198\.51\.100\.7:9"):
        loopback_only.check()
    loopback_only.clear()  # the provoked violation is not this test's failure


def test_a_child_process_socket_is_seen(loopback_only: LoopbackWatcher) -> None:
    """The watcher follows processes the test starts, as it must for the server and worker."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
            f" s.connect({OFF_HOST!r}); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        loopback_only.wait_for_samples()
    finally:
        child.communicate(timeout=10)
    loopback_only.wait_for_samples()

    [violation] = loopback_only.violations
    assert (violation.pid, violation.remote) == (child.pid, "198.51.100.7:9")
    loopback_only.clear()


def test_loopback_connections_are_counted_and_pass(loopback_only: LoopbackWatcher) -> None:
    """A connection on 127.0.0.1 passes, and is counted as traffic the watcher saw."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()):
            accepted, _ = server.accept()
            with accepted:
                loopback_only.wait_for_samples()

    assert loopback_only.loopback_connections >= 2  # both ends
    loopback_only.check()


def test_strict_watcher_flags_a_bind_on_the_host_address() -> None:
    """Without ``allow_host_addresses``, a socket on the machine's own interface fails."""
    public = sorted(ip for ip in host_addresses() if ":" not in ip and not is_loopback(ip))
    if not public:
        pytest.skip("this machine has no non-loopback IPv4 address")
    watcher = LoopbackWatcher()
    with watcher, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((public[0], 0))
        watcher.wait_for_samples()

    with pytest.raises(AssertionError, match=rf"udp {public[0]}:\d+ \(NONE\)"):
        watcher.check()


def test_ipv4_mapped_loopback_is_loopback() -> None:
    """How livekit-server's dual-stack sockets report 127.0.0.1 counts as loopback."""
    assert is_loopback("::ffff:127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("::ffff:198.51.100.7")
