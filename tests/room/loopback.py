"""Proof that a test's sockets stay on this machine, for code that asyncio cannot see.

The rtc SDK opens its sockets in Rust, livekit-server and the agent worker are other
processes: patching asyncio would miss all of them. ``LoopbackWatcher`` instead samples the
kernel's socket table of the test process, every process it started (recursively) and any
pid it is given, and records every socket that is not on 127.0.0.1 or ::1.

WebRTC clients (libwebrtc in the rtc SDK, Chromium) never gather ICE candidates on a
loopback interface, so they bind the host's own interface address (``eth0``) even when the
only peer they are offered is 127.0.0.1. With ``allow_host_addresses`` such a socket is
allowed, as is a connection between such an address and loopback: an address assigned to
this machine is delivered through the loopback device and never reaches a network. Any
other remote address still fails the check.

What sampling cannot see: a socket opened and closed between two samples, and where an
unconnected UDP socket sends its datagrams (it has no remote address). For WebRTC those
destinations are the ICE candidates and servers the peer offered; ``ice_remote_addresses``
lists the first from a room's own statistics, and the test server offers 127.0.0.1 only.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

import psutil

_WILDCARDS = {"0.0.0.0", "::"}


class SocketRecord(NamedTuple):
    """One socket the watcher saw, printable as ``process[pid] udp local -> remote (status)``."""

    pid: int
    process: str
    kind: str
    local: str
    remote: str
    status: str

    def __str__(self) -> str:
        arrow = f" -> {self.remote}" if self.remote else ""
        return f"{self.process}[{self.pid}] {self.kind} {self.local}{arrow} ({self.status})"


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` is a loopback address, IPv4-mapped IPv6 included."""
    return ipaddress.ip_address(_unmapped(ip)).is_loopback


def host_addresses() -> set[str]:
    """Every IP address assigned to one of this machine's interfaces."""
    return {
        a.address.split("%", 1)[0]
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family in (socket.AF_INET, socket.AF_INET6)
    }


async def ice_remote_addresses(room: Any) -> set[str]:
    """The addresses of every remote ICE candidate a connected ``rtc.Room`` knows of.

    These are where the room's unconnected UDP sockets may send, which the watcher cannot
    see.
    """
    stats = await room.get_rtc_stats()
    return {
        s.remote_candidate.candidate.address
        for s in [*stats.publisher_stats, *stats.subscriber_stats]
        if s.HasField("remote_candidate")
    }


class LoopbackWatcher:
    """Sample the inet sockets of a set of processes in a thread and flag non-loopback ones.

    Flagged: a remote address that is not loopback, and a local address that is neither
    loopback nor a wildcard (a wildcard bind is how servers listen; what they accept still
    shows up as remote addresses). With ``allow_host_addresses``, this machine's own
    addresses count as loopback on both ends; the sockets bound to them are listed in
    ``host_bound``.

    Example::

        watcher = LoopbackWatcher()
        watcher.watch(server.process.pid)
        with watcher:
            ...  # run the room
        watcher.check()
        assert watcher.loopback_connections > 0
    """

    def __init__(
        self,
        *,
        interval: float = 0.05,
        include_children: bool = True,
        allow_host_addresses: bool = False,
    ) -> None:
        self._interval = interval
        self._include_children = include_children
        self._allow_host_addresses = allow_host_addresses
        self._host_addresses: set[str] = set()
        self._roots: set[int] = {os.getpid()}
        self._lock = threading.Lock()
        self._violations: dict[tuple[Any, ...], SocketRecord] = {}
        self._loopback: set[tuple[Any, ...]] = set()
        self._host_bound: dict[tuple[Any, ...], SocketRecord] = {}
        self._samples = 0
        self._sampled = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def watch(self, pid: int) -> None:
        """Also watch ``pid`` (and, by default, its children)."""
        with self._lock:
            self._roots.add(pid)

    @property
    def violations(self) -> list[SocketRecord]:
        """Every non-loopback socket seen so far, once each."""
        with self._lock:
            return list(self._violations.values())

    @property
    def host_bound(self) -> list[SocketRecord]:
        """Allowed sockets on this machine's own, non-loopback addresses."""
        with self._lock:
            return list(self._host_bound.values())

    @property
    def loopback_connections(self) -> int:
        """How many distinct connected sockets to loopback (or this machine) were seen."""
        with self._lock:
            return len(self._loopback)

    @property
    def samples(self) -> int:
        """How many samples were taken."""
        with self._lock:
            return self._samples

    def start(self) -> None:
        """Start sampling in a daemon thread; one sample is taken before this returns."""
        if self._thread is not None:
            raise RuntimeError("the watcher is already started")
        self.sample()
        self._thread = threading.Thread(target=self._run, name="loopback-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling, after one last sample."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def __enter__(self) -> LoopbackWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_samples(self, count: int = 2, *, timeout: float = 5.0) -> None:
        """Block until ``count`` more samples have been taken by the thread."""
        with self._sampled:
            target = self._samples + count
            if not self._sampled.wait_for(lambda: self._samples >= target, timeout=timeout):
                raise TimeoutError("the loopback watcher stopped sampling")

    def clear(self) -> None:
        """Forget what was seen (for a test that provokes a violation on purpose)."""
        with self._lock:
            self._violations.clear()
            self._loopback.clear()
            self._host_bound.clear()

    def check(self) -> None:
        """Raise ``AssertionError`` listing every non-loopback socket seen."""
        if self._error is not None:
            raise AssertionError("the loopback watcher failed") from self._error
        violations = self.violations
        if violations:
            raise AssertionError(
                "sockets left loopback:\n" + "\n".join(f"  {v}" for v in violations)
            )

    def sample(self) -> None:
        """Take one sample now."""
        if self._allow_host_addresses:
            self._host_addresses = host_addresses()
        seen: list[tuple[psutil.Process, Any]] = []
        for process in self._processes():
            try:
                connections = process.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            seen.extend((process, c) for c in connections)
        with self._sampled:
            for process, conn in seen:
                self._record(process, conn)
            self._samples += 1
            self._sampled.notify_all()

    def _processes(self) -> Iterable[psutil.Process]:
        with self._lock:
            roots = list(self._roots)
        found: dict[int, psutil.Process] = {}
        for pid in roots:
            try:
                root = psutil.Process(pid)
                found[pid] = root
                if self._include_children:
                    for child in root.children(recursive=True):
                        found[child.pid] = child
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        return found.values()

    def _record(self, process: psutil.Process, conn: Any) -> None:
        local_ip = conn.laddr.ip if conn.laddr else ""
        remote_ip = conn.raddr.ip if conn.raddr else ""
        key = (process.pid, conn.fd, conn.type, conn.laddr, conn.raddr)
        bad_local = bool(local_ip) and local_ip not in _WILDCARDS and not self._local(local_ip)
        bad_remote = bool(remote_ip) and not self._local(remote_ip)
        if bad_local or bad_remote:
            if key not in self._violations:
                self._violations[key] = _socket_record(process, conn)
            return
        if remote_ip:
            self._loopback.add(key)
        if local_ip and local_ip not in _WILDCARDS and not is_loopback(local_ip):
            if key not in self._host_bound:
                self._host_bound[key] = _socket_record(process, conn)

    def _local(self, ip: str) -> bool:
        if is_loopback(ip):
            return True
        return self._allow_host_addresses and _unmapped(ip) in self._host_addresses

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                self.sample()
        except BaseException as e:  # surfaced by check(): a dead watcher proves nothing
            self._error = e


def _unmapped(ip: str) -> str:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _socket_record(process: psutil.Process, conn: Any) -> SocketRecord:
    return SocketRecord(
        pid=process.pid,
        process=_name(process),
        kind="udp" if conn.type == socket.SOCK_DGRAM else "tcp",
        local=_format(conn.laddr),
        remote=_format(conn.raddr),
        status=conn.status,
    )


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return "?"


def _format(address: Any) -> str:
    if not address:
        return ""
    host = f"[{address.ip}]" if ":" in address.ip else address.ip
    return f"{host}:{address.port}"
