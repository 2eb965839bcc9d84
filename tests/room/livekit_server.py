"""A real livekit-server for the room tests, built from a pinned release and run on loopback.

The binary is built once with ``go install`` and cached in the git-ignored
``.cache/livekit-server/<version>/``; ``nox -s room`` builds it before pytest runs, or build
it by hand::

    python tests/room/livekit_server.py --build

Each server gets free ports on 127.0.0.1, a fresh API key and secret, and a configuration
that keeps every socket on loopback: no STUN lookup of the node's public IP, no public STUN
servers handed to clients, ICE candidates on 127.0.0.1 only.

This module needs only the standard library, so it runs before the test dependencies exist.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Pinned to v1.13.5, the newest release `go install` can build: the later ones' go.mod
# replaces pion's webrtc, ice and dtls with livekit's `-warp` forks, and
# `go install module@version` refuses a module whose go.mod has replace directives (the
# Go proxy also answers 403 for the forks). v1.13.5 needs Go >= 1.26.
LIVEKIT_SERVER_VERSION = "v1.13.5"
GO_PACKAGE = "github.com/livekit/livekit-server/cmd/server"

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "livekit-server"

BUILD_TIMEOUT = 30 * 60.0
_STDERR_TAIL_LINES = 30


def binary_path(version: str = LIVEKIT_SERVER_VERSION, *, cache_dir: Path = CACHE_DIR) -> Path:
    """Where the server binary of ``version`` is cached."""
    return cache_dir / version / "livekit-server"


def ensure_binary(version: str = LIVEKIT_SERVER_VERSION, *, cache_dir: Path = CACHE_DIR) -> Path:
    """Return the cached livekit-server binary, building it with ``go install`` when missing.

    The build goes to a temporary directory next to the cache and is moved into place with
    one rename, so a build that is killed half way never leaves a binary behind.

    Raises:
        RuntimeError: Go is not installed or the build failed; the message names the
            command and ends with the tail of its output.
    """
    target = binary_path(version, cache_dir=cache_dir)
    if target.is_file() and os.access(target, os.X_OK):
        return target

    go = shutil.which("go")
    command = ["go", "install", f"{GO_PACKAGE}@{version}"]
    if go is None:
        raise RuntimeError(
            f"`{' '.join(command)}` cannot run: Go is not installed (https://go.dev/doc/install);"
            " the room tests need it once to build livekit-server"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # same directory as the target, so the final rename stays on one file system
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as gobin:
        try:
            proc = subprocess.run(
                [go, *command[1:]],
                # outside the repository so no go.mod or go.work of ours is picked up
                cwd=gobin,
                env={**os.environ, "GOBIN": gobin},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(
                f"`{' '.join(command)}` did not finish in {BUILD_TIMEOUT:.0f} s"
            ) from e
        built = Path(gobin) / "server"
        if proc.returncode != 0 or not built.is_file():
            tail = _tail(proc.stderr + proc.stdout, _STDERR_TAIL_LINES)
            raise RuntimeError(
                f"`{' '.join(command)}` failed (exit code {proc.returncode}):\n{tail}"
            )
        os.replace(built, target)
    return target


@dataclass
class LiveKitServer:
    """A running livekit-server and what a client needs to reach it."""

    url: str
    """WebSocket URL for clients, ``ws://127.0.0.1:<port>``."""
    http_url: str
    """HTTP URL of the same port, for the server API (``livekit.api.LiveKitAPI``)."""
    api_key: str
    api_secret: str
    process: subprocess.Popen[bytes]
    log_path: Path
    """The server's own log (stdout and stderr)."""
    rtc_tcp_port: int
    rtc_udp_port: int
    _workdir: Path = field(repr=False)

    def token(self, *, identity: str, room: str, name: str | None = None) -> str:
        """A join token for ``room``, signed with this server's key.

        Needs ``livekit-api``; imported here so building the binary does not.
        """
        from livekit import api

        token = (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room))
        )
        if name is not None:
            token = token.with_name(name)
        return token.to_jwt()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except FileNotFoundError:
            return "(no log)"

    def stop(self, *, timeout: float = 5.0, grace: float | None = None) -> None:
        """Stop the server and wait until its process is gone.

        SIGTERM first; the server then waits for participants to leave, so a second SIGTERM
        forces it; SIGKILL when that does not work either. Safe to call twice.

        Args:
            timeout: Seconds to wait after each later signal.
            grace: Seconds to wait after the first SIGTERM (``timeout`` when not given).
        """
        signals = (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL)
        waits = (timeout if grace is None else grace, timeout, timeout)
        try:
            for sig, wait in zip(signals, waits, strict=True):
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=wait)
            self.process.wait(timeout=timeout)
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)


def start_server(
    *,
    binary: Path | None = None,
    log_path: Path | None = None,
    log_level: str = "info",
    ready_timeout: float = 30.0,
    attempts: int = 3,
) -> LiveKitServer:
    """Start livekit-server on free loopback ports and wait until it answers.

    Args:
        binary: The server binary; built or taken from the cache when not given.
        log_path: Where the server's log goes; a temporary file removed on ``stop`` when not
            given.
        log_level: The server's log level (``debug``, ``info``, ``warn``, ``error``).
        ready_timeout: Seconds to wait for the server to answer on its HTTP port.
        attempts: Starts to try when a port picked as free is taken before the server
            binds it.

    Raises:
        RuntimeError: The server exited or did not answer in time; the message ends with
            the tail of its log.
    """
    binary = binary or ensure_binary()
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(binary, log_path, log_level, ready_timeout)
        except _PortTaken:
            if attempt == attempts:
                raise RuntimeError(
                    f"livekit-server could not bind free ports in {attempts} attempts"
                ) from None
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    pass


def _start_once(
    binary: Path, log_path: Path | None, log_level: str, ready_timeout: float
) -> LiveKitServer:
    workdir = Path(tempfile.mkdtemp(prefix="livekit-server-"))
    port, tcp_port = _free_ports(socket.SOCK_STREAM, 2)
    (udp_port,) = _free_ports(socket.SOCK_DGRAM, 1)
    api_key = "APIasynctools" + secrets.token_hex(4)
    api_secret = secrets.token_urlsafe(32)  # the server warns below 32 characters
    config = workdir / "livekit.yaml"
    config.write_text(
        _config_yaml(
            port=port,
            tcp_port=tcp_port,
            udp_port=udp_port,
            api_key=api_key,
            api_secret=api_secret,
            log_level=log_level,
        )
    )
    if log_path is None:
        log_path = workdir / "livekit-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(binary), "--config", str(config)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # its own process group, so a Ctrl-C meant for us does not race our stop
            start_new_session=True,
            # the kernel signals the child when the *thread* that forked it ends
            preexec_fn=_die_with_parent
            if threading.current_thread() is threading.main_thread()
            else None,
        )
    server = LiveKitServer(
        url=f"ws://127.0.0.1:{port}",
        http_url=f"http://127.0.0.1:{port}",
        api_key=api_key,
        api_secret=api_secret,
        process=process,
        log_path=log_path,
        rtc_tcp_port=tcp_port,
        rtc_udp_port=udp_port,
        _workdir=workdir,
    )
    try:
        _wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _config_yaml(
    *, port: int, tcp_port: int, udp_port: int, api_key: str, api_secret: str, log_level: str
) -> str:
    return f"""\
port: {port}
bind_addresses: ["127.0.0.1"]
rtc:
  tcp_port: {tcp_port}
  udp_port: {udp_port}
  # no STUN lookup of a public IP: the node's address is loopback
  use_external_ip: false
  node_ip: "127.0.0.1"
  enable_loopback_candidate: true
  ips:
    includes: ["127.0.0.1/32"]
  # clients are otherwise handed Google's and Twilio's public STUN servers; point them at
  # our own UDP port, which ignores a binding request without an ICE username
  stun_servers: ["127.0.0.1:{udp_port}"]
  use_mdns: false
turn:
  enabled: false
# the server hands a job only to a worker reporting a load under target_load (0.7 by
# default, of the whole machine's CPU): on a 2-core machine running Chromium beside the
# worker that is often over, and no agent would ever join
agents:
  target_load: 1000
keys:
  "{api_key}": "{api_secret}"
logging:
  level: "{log_level}"
  pion_level: "error"
"""


def _free_ports(kind: socket.SocketKind, count: int) -> list[int]:
    """Ports the kernel reports free on 127.0.0.1, all different."""
    sockets = [socket.socket(socket.AF_INET, kind) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_ready(server: LiveKitServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = server.process.poll()
        if code is not None:
            tail = server.log_tail()
            if "address already in use" in tail:
                raise _PortTaken
            raise RuntimeError(f"livekit-server exited with code {code} on start:\n{tail}")
        try:
            with urllib.request.urlopen(server.http_url + "/", timeout=1.0) as response:
                if response.status == 200 and response.read().strip() == b"OK":
                    # the server counts as running, and heeds a SIGTERM, only 100 ms after
                    # it starts serving (pkg/service/server.go); a stop before is ignored
                    time.sleep(0.15)
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"livekit-server did not answer on {server.http_url} within {timeout:.0f} s:\n"
                + server.log_tail()
            )
        time.sleep(0.05)


def _die_with_parent() -> None:
    """Have the kernel kill the server when the process that started it dies.

    A test run killed from outside (a CI timeout, Ctrl-C twice) then leaves no server
    behind. Linux only; elsewhere ``stop`` is the only guarantee.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1
# looked up here, not in the forked child, where loading a library could deadlock
_prctl = getattr(ctypes.CDLL(None), "prctl", None) if sys.platform == "linux" else None


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--build", action="store_true", help="build or find the binary")
    group.add_argument(
        "--serve", action="store_true", help="run a server until Ctrl-C and print how to join"
    )
    args = parser.parse_args()
    if args.build:
        try:
            print(ensure_binary())
        except RuntimeError as e:
            sys.exit(str(e))
        return
    server = start_server()
    print(f"LIVEKIT_URL={server.url}")
    print(f"LIVEKIT_API_KEY={server.api_key}")
    print(f"LIVEKIT_API_SECRET={server.api_secret}", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
